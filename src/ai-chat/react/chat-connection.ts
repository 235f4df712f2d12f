import type { AgentClient } from "../../client/index.js";

/**
 * An Outpost `AgentClient` in the shape the official `useAgentChat` expects of the socket
 * `agents/react`'s `useAgent` returns. One per client, so its identity is stable across
 * renders: the official hook resets its resume state whenever the object changes.
 */
export class ChatConnection {
  readonly #client: AgentClient<unknown>;
  constructor(client: AgentClient<unknown>) {
    this.#client = client;
    this.send = this.send.bind(this);
    this.addEventListener = this.addEventListener.bind(this);
    this.removeEventListener = this.removeEventListener.bind(this);
    this.getHttpUrl = this.getHttpUrl.bind(this);
  }

  get agent(): string {
    return this.#client.agent;
  }

  get name(): string {
    return this.#client.name;
  }

  get connectionError(): AgentClient<unknown>["connectionError"] {
    return this.#client.connectionError;
  }

  /** What the official hook sends as `id` to `prepareSendMessagesRequest`. */
  get _pk(): string {
    return `${this.#client.agent}/${this.#client.name}`;
  }

  send(data: string): void {
    this.#client.send(data);
  }

  addEventListener(
    type: string,
    listener: (event: MessageEvent) => void,
    options?: { signal?: AbortSignal },
  ): void {
    this.#client.addEventListener(type, listener as (event: Event) => void, options);
  }

  removeEventListener(type: string, listener: (event: MessageEvent) => void): void {
    this.#client.removeEventListener(type, listener as (event: Event) => void);
  }

  /**
   * No HTTP URL: the history comes over the socket (the transcript the server sends on
   * connect), which carries the credentials, so no token travels in a second URL.
   */
  getHttpUrl(): string {
    return "";
  }
}

const connections = new WeakMap<AgentClient<unknown>, ChatConnection>();

/** The one `ChatConnection` of `client`. */
export function chatConnection(client: AgentClient<unknown>): ChatConnection {
  let connection = connections.get(client);
  if (connection === undefined) {
    connection = new ChatConnection(client);
    connections.set(client, connection);
  }
  return connection;
}

import type { Logger } from "pino";
import { CloseCode } from "../protocol/close-codes.js";
import { EMPTY_MCP_SERVERS, FrameType, type ServerFrame } from "../protocol/frames.js";
import { Agent, type ConnectionContext } from "./agent.js";
import type { Connection, ServerConnection } from "./connection.js";
import { connectionTags, TagIndex } from "./connection-tags.js";
import { runWithAgent } from "./context.js";
import type { AgentInstance } from "./instance.js";
import { isThenable } from "./shared.js";

/** The same bytes for every connect. */
const EMPTY_MCP_SERVERS_TEXT = JSON.stringify(EMPTY_MCP_SERVERS);

/**
 * The connections one instance holds: how a socket joins (tags, `onConnect`, then identity
 * and state in one write), how agent code finds them (by id, by tag), and how one leaves
 * (`onClose`). One per instance, made with it; its methods take the connection they act
 * on, so nothing is allocated per connect to reach them.
 */
export class InstanceConnections {
  readonly #instance: AgentInstance;
  readonly #log: Logger;
  readonly #byId = new Map<string, ServerConnection>();
  readonly #tags = new TagIndex();
  /** The last state frame sent, with the state it was made from (see `#stateText`). */
  #stateFrame: { state: unknown; text: string } | undefined;
  readonly #identityTexts: [string?, string?] = [];
  #warnedVerifiedRefused = false;

  constructor(instance: AgentInstance, log: Logger) {
    this.#instance = instance;
    this.#log = log;
  }

  /** Open and still being set up alike. */
  get size(): number {
    return this.#byId.size;
  }

  /** Every connection held, accepted or not yet. */
  values(): IterableIterator<ServerConnection> {
    return this.#byId.values();
  }

  /** The connection held under `id`, accepted or not yet. */
  get(id: string): ServerConnection | undefined {
    return this.#byId.get(id);
  }

  /** `Agent.broadcast`: every accepted connection but those `without`. */
  broadcast(message: string | ArrayBuffer | ArrayBufferView, without?: readonly string[]): void {
    for (const connection of this.#byId.values()) {
      if (!connection.accepted) continue;
      if (without?.includes(connection.id)) continue;
      connection.send(message);
    }
  }

  /** `Agent.getConnections`: the accepted connections, or those carrying `tag`. */
  accepted(tag?: string): Iterable<Connection> {
    if (tag === undefined) return [...this.#byId.values()].filter((c) => c.accepted);
    // Every connection carries its id as a tag, as in the SDK.
    const own = this.#byId.get(tag);
    const tagged = [...this.#tags.get(tag)].filter((c) => c.accepted);
    return own?.accepted ? [own, ...tagged.filter((c) => c !== own)] : tagged;
  }

  /** `Agent.getConnection`: the accepted connection with `id`. */
  acceptedById(id: string): Connection | undefined {
    const connection = this.#byId.get(id);
    return connection?.accepted ? connection : undefined;
  }

  /**
   * The state changed to `state` (serialized as the frame `text`): send it to every accepted
   * connection but `source`, and keep the text for the next connects.
   */
  stateChanged(state: unknown, text: string, source: ServerConnection | "server"): void {
    this.#stateFrame = { state, text };
    for (const connection of this.#byId.values()) {
      if (connection.accepted && connection !== source) connection.send(text);
    }
  }

  /** Take over an authenticated socket: onConnect, then identity and state. */
  attach(connection: ServerConnection, makeRequest: () => Request): void {
    this.#byId.set(connection.id, connection);
    if (!runsConnectHooks(this.#instance.agent)) {
      // No agent code runs while this socket joins, so there is no context to give it: no
      // AsyncLocalStorage.run for `getCurrentAgent()`, no context objects, no getters.
      connection.enqueue(() => this.#connected(connection));
      return;
    }
    // Built on first read, here and for getCurrentAgent(): most agents never look at it.
    let request: Request | undefined;
    const ctx: ConnectionContext = {
      get request() {
        request ??= makeRequest();
        return request;
      },
    };
    const current = {
      agent: this.#instance.agent,
      connection,
      get request() {
        return ctx.request;
      },
    };
    connection.enqueue(() => runWithAgent(current, () => this.#connect(connection, ctx)));
  }

  /**
   * Tags, the read-only check and `onConnect`, then identity and state. Not `async`: with
   * the default tags and a synchronous `onConnect`, the frames go out in the same turn and
   * no promise is made (each costs, with `getCurrentAgent`'s AsyncLocalStorage active).
   */
  #connect(connection: ServerConnection, ctx: ConnectionContext): Promise<void> | undefined {
    const agent = this.#instance.agent;
    if (agent.getConnectionTags !== Agent.prototype.getConnectionTags) {
      return this.#connectTagged(connection, ctx);
    }
    let result: void | Promise<void>;
    try {
      if (agent.shouldConnectionBeReadonly(connection, ctx) === true) connection.restrict();
      result = agent.onConnect(connection, ctx);
    } catch (error) {
      this.#connectFailed(connection, error);
      return;
    }
    if (isThenable(result)) {
      return Promise.resolve(result).then(
        () => this.#connected(connection),
        (error) => this.#connectFailed(connection, error),
      );
    }
    this.#connected(connection);
  }

  /** `#connect` for an agent that overrides `getConnectionTags`. */
  async #connectTagged(connection: ServerConnection, ctx: ConnectionContext): Promise<void> {
    const agent = this.#instance.agent;
    try {
      const tags = connectionTags(connection.id, await agent.getConnectionTags(connection, ctx));
      if (!this.#byId.has(connection.id)) return; // closed while tags were computed
      connection.setTags(tags);
      this.#tags.add(connection, tags);
      if (agent.shouldConnectionBeReadonly(connection, ctx) === true) connection.restrict();
      await agent.onConnect(connection, ctx);
    } catch (error) {
      this.#connectFailed(connection, error);
      return;
    }
    this.#connected(connection);
  }

  #connectFailed(connection: ServerConnection, error: unknown): void {
    this.#instance.reportError(connection, error);
    connection.close(CloseCode.InternalError, "internal error");
  }

  /** `onConnect` has finished: identity, state and the MCP list, in one write. */
  #connected(connection: ServerConnection): void {
    if (connection.closedWith === CloseCode.Unauthorized && connection.auth !== undefined) {
      this.#warnVerifiedRefused();
    }
    if (!connection.isOpen) return;
    const instance = this.#instance;
    const state = instance.readState() ?? instance.agent.initialState;
    // The empty MCP list follows, as the SDK sends it, so the official useAgent's
    // onMcpUpdate fires; all of them in one corked write.
    connection.sendAll(
      state === undefined
        ? [this.#identityText(false), EMPTY_MCP_SERVERS_TEXT]
        : [this.#identityText(true), this.#stateText(state), EMPTY_MCP_SERVERS_TEXT],
    );
    connection.markAccepted();
  }

  /** The identity frame, serialized once per instance for each value of `stateFollows`. */
  #identityText(stateFollows: boolean): string {
    const index = stateFollows ? 1 : 0;
    this.#identityTexts[index] ??= JSON.stringify({
      type: FrameType.Identity,
      agent: this.#instance.agentName,
      name: this.#instance.name,
      ...(stateFollows && { stateFollows: true }),
    } satisfies ServerFrame);
    return this.#identityTexts[index];
  }

  /**
   * The state frame for `state`, serialized once for as long as the state is the same
   * object: every connect in between sends the same text.
   */
  #stateText(state: unknown): string {
    if (this.#stateFrame === undefined || this.#stateFrame.state !== state) {
      const text = JSON.stringify({ type: FrameType.State, state } satisfies ServerFrame);
      this.#stateFrame = { state, text };
    }
    return this.#stateFrame.text;
  }

  /**
   * onConnect closed 4001 a connection whose token the policy had just verified. The page's
   * pattern checks the token again inside a try/catch, which turns any error there (such as
   * the ReferenceError of a `verifyJWT` never imported) into "Unauthorized" for everyone and
   * logs nothing; this line is the only trace. Once per instance: the cause is in the code.
   */
  #warnVerifiedRefused(): void {
    if (this.#warnedVerifiedRefused) return;
    this.#warnedVerifiedRefused = true;
    this.#log.warn(
      "onConnect closed 4001 a connection whose token was already verified; if onConnect checks the token itself in a try/catch, an error there (e.g. verifyJWT used but not imported) becomes this 4001 for every client. connection.auth holds the verified claims (logged once)",
    );
  }

  /** The socket closed: forget it now, tell the agent in frame order. */
  detach(connection: ServerConnection, code: number, reason: string): void {
    connection.clearExpiry();
    this.#byId.delete(connection.id);
    this.#tags.remove(connection);
    // Not `async`: a synchronous onClose (the default) makes no promise.
    connection.enqueue(() => {
      const instance = this.#instance;
      // A destroyed instance is gone: its hooks do not run against deleted data.
      if (instance.closed) return;
      const agent = instance.agent;
      // The default onClose does nothing: no context to set up for it.
      if (agent.onClose === Agent.prototype.onClose) {
        instance.checkIdle();
        return;
      }
      let result: void | Promise<void>;
      try {
        result = runWithAgent({ agent, connection }, () =>
          agent.onClose(connection, code, reason, code !== 1006),
        );
      } catch (error) {
        instance.reportError(connection, error);
        result = undefined;
      }
      if (isThenable(result)) {
        return Promise.resolve(result).then(
          () => instance.checkIdle(),
          (error) => {
            instance.reportError(connection, error);
            instance.checkIdle();
          },
        );
      }
      instance.checkIdle();
    }, true);
  }
}

/** Does joining run agent code: `onConnect`, `shouldConnectionBeReadonly` or `getConnectionTags`? */
function runsConnectHooks(agent: Agent<unknown, unknown>): boolean {
  const base = Agent.prototype;
  return (
    agent.onConnect !== base.onConnect ||
    agent.shouldConnectionBeReadonly !== base.shouldConnectionBeReadonly ||
    agent.getConnectionTags !== base.getConnectionTags
  );
}

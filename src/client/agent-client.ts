import type { Message } from "partysocket/ws";
import { agentNameToKebab, FrameType, type RpcResponseFrame } from "../protocol/frames.js";
import { Attempts } from "./attempts.js";
import { AgentCallError, AgentConnectionError, type ConnectionErrorCode } from "./errors.js";
import {
  type AgentClientEventMap,
  type AgentClientEventType,
  type AgentClientListener,
  type AgentClientListenerOptions,
  ClientEvents,
  closeEvent,
} from "./events.js";
import { type HandshakeFailure, hostAndPort } from "./handshake-failure.js";
import { type AgentClientOptions, CLIENT_DEFAULTS } from "./options.js";
import { Outbox } from "./outbox.js";
import {
  type CallOptions,
  PendingCalls,
  type StreamCallbacks,
  splitCallOptions,
} from "./pending-calls.js";
import { runQuery } from "./query.js";
import { resolveReconnectOptions } from "./reconnect.js";
import { TokenRefresh } from "./refresh.js";
import { type CloseInfo, type ConnectionStatus, READY_STATE } from "./status.js";
import { type AgentStub, createStub } from "./stub.js";
import { Transport, type WebSocketConstructor } from "./transport.js";
import { agentUrl, httpUrlOf, type QueryParams } from "./url.js";

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: Error) => void;
  settled: boolean;
}

function deferred(): Deferred {
  const entry = { settled: false } as Deferred;
  entry.promise = new Promise<void>((resolve, reject) => {
    entry.resolve = () => {
      entry.settled = true;
      resolve();
    };
    entry.reject = (error) => {
      entry.settled = true;
      reject(error);
    };
  });
  // Nobody has to await `ready`: a rejection must not surface as unhandled.
  entry.promise.catch(() => {});
  return entry;
}

/**
 * A connection to one agent instance, in the browser or in Node: state sync, RPC (plain and
 * streaming), reconnection with backoff and jitter, and credentials handled for you —
 * `query` re-run before each attempt, a 4001 answered with fresh credentials, tokens
 * refreshed in-band before they expire.
 *
 * Speaks the Cloudflare Agents protocol, so it also works with servers that know nothing of
 * Outpost's own frames.
 *
 * The pieces are in their own modules: the socket (`Transport`), the retry decisions
 * (`Attempts`), calls waiting for answers (`PendingCalls`), frames waiting for a connection
 * (`Outbox`), and the in-band refresh (`TokenRefresh`). This class is the handshake, state
 * sync, and the public API that composes them.
 *
 * @example
 * import WebSocket from "ws";
 * const client = new AgentClient<{ count: number }>({
 *   agent: "Counter",
 *   name: "room-1",
 *   host: "https://agents.example.com",
 *   query: async () => ({ token: await getToken() }),
 *   WebSocket,
 *   onStateUpdate: (state) => console.log(state.count),
 * });
 * await client.ready;
 * await client.stub.increment(2);
 */
export class AgentClient<State = unknown> {
  /** Same values as `WebSocket.CONNECTING` etc., for comparing with `readyState`. */
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;

  /** Kebab-case agent name; updated from the server's identity frame. */
  agent: string;
  /** Instance name; updated from the server's identity frame. */
  name: string;
  /** Last known agent state; `undefined` until the server sends it. */
  state: State | undefined = undefined;
  /** Why the connection ended for good, or `null`. Cleared by `reconnect()`. */
  connectionError: AgentConnectionError | null = null;
  /** `client.stub.method(...args)` calls `method` on the agent. */
  readonly stub: AgentStub;

  readonly #options: AgentClientOptions<State>;
  readonly #attempts: Attempts;
  readonly #refresh: TokenRefresh;
  readonly #transport: Transport;
  readonly #outbox: Outbox;
  readonly #calls: PendingCalls;
  readonly #events = new ClientEvents();
  #status: ConnectionStatus;
  #ready = deferred();

  /** Set by `close()` and by a final failure; cleared by `reconnect()`. */
  #stopped: boolean;
  /** `reconnect()` on a live socket: its close is not a failure. */
  #restarting = false;
  #lastClose: CloseInfo | undefined;

  /** Handshake progress of the current socket. */
  #identity: { name: string; agent: string } | undefined;
  /** The identity of the last accepted connection, to notice a reconnect elsewhere. */
  #previousIdentity: { name: string; agent: string } | undefined;
  /** Set on acceptance, cleared as soon as the socket closes (before close listeners run). */
  #identified = false;
  /** The URL of the latest attempt, query included (for `getHttpUrl`). */
  #url: string | undefined;
  #stateSeen = false;
  #openedAt = 0;
  #identityTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: AgentClientOptions<State>) {
    this.#options = options;
    this.#attempts = new Attempts(resolveReconnectOptions(options.reconnect));
    this.#refresh = new TokenRefresh(options.refresh, {
      query: (reason) => runQuery(this.#options.query, reason),
      send: (text) => this.#transmit(text),
      isOpen: () => this.#status.state === "open",
    });
    this.#outbox = new Outbox(options.maxQueuedMessages ?? CLIENT_DEFAULTS.maxQueuedMessages);
    this.#calls = new PendingCalls(
      options.defaultCallTimeout ?? CLIENT_DEFAULTS.defaultCallTimeout,
      (id) => this.#outbox.dropCall(id),
    );
    this.agent = agentNameToKebab(options.agent);
    this.name = options.name ?? "default";
    this.#stopped = options.startClosed === true;
    this.#status = this.#stopped
      ? { state: "closed", reason: "not_started" }
      : { state: "connecting", attempt: 1 };

    this.call = this.call.bind(this);
    this.setState = this.setState.bind(this);
    this.send = this.send.bind(this);
    this.close = this.close.bind(this);
    this.reconnect = this.reconnect.bind(this);
    this.getHttpUrl = this.getHttpUrl.bind(this);
    this.addEventListener = this.addEventListener.bind(this);
    this.removeEventListener = this.removeEventListener.bind(this);
    this.stub = createStub((method, args) => this.call(method, args));

    this.#transport = new Transport(
      {
        webSocket: () => this.#webSocketClass(),
        connectionTimeout: options.connectionTimeout ?? CLIENT_DEFAULTS.connectionTimeout,
        startClosed: this.#stopped,
      },
      {
        url: () => this.#nextUrl(),
        open: () => this.#handleOpen(),
        message: (event) => {
          this.#handleMessage(event);
          if (this.#events.has("message")) this.#events.emit("message", event);
        },
        error: (event) => this.#events.emit("error", event),
        close: (event, failure) => this.#handleClose(event, failure),
      },
    );
  }

  /**
   * Listen to the connection's events, as on the official client (a `PartySocket`):
   * `message` for every frame from the server (protocol frames included), `close` for every
   * socket close, `error` for socket errors, and `open` once the server has accepted the
   * connection — not on the bare socket open, since an Outpost server accepts the upgrade
   * even when it refuses the credentials. Options `once` and `signal` work as on
   * `EventTarget`.
   *
   * @example
   * client.addEventListener("message", (event) => console.log(event.data));
   */
  addEventListener<K extends AgentClientEventType>(
    type: K,
    listener: AgentClientListener<AgentClientEventMap[K]> | null,
    options?: boolean | AgentClientListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: AgentClientListener<Event> | null,
    options?: boolean | AgentClientListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: AgentClientListener<never> | null,
    options?: boolean | AgentClientListenerOptions,
  ): void {
    this.#events.add(type, listener, options);
  }

  /** Remove a listener added with `addEventListener`. */
  removeEventListener<K extends AgentClientEventType>(
    type: K,
    listener: AgentClientListener<AgentClientEventMap[K]> | null,
  ): void;
  removeEventListener(type: string, listener: AgentClientListener<Event> | null): void;
  removeEventListener(type: string, listener: AgentClientListener<never> | null): void {
    this.#events.remove(type, listener);
  }

  /**
   * Resolves once the server has accepted the connection and sent its identity (and its
   * state, when it has one). After a drop it is replaced by a new pending promise; it
   * rejects when the connection ends for good or `close()` is called.
   */
  get ready(): Promise<void> {
    return this.#ready.promise;
  }

  /**
   * True once the server has named the instance and sent its state (when `ready`
   * resolves); false again from the moment the connection drops.
   */
  get identified(): boolean {
    return this.#identified;
  }

  /** The `path` option as a URL suffix (`"/settings"`), or `""`: as on a `PartySocket`. */
  get path(): string {
    const { path } = this.#options;
    return path ? `/${path.replace(/^\/+/, "")}` : "";
  }

  /**
   * The agent's HTTP address (`http(s)://…/agents/<agent>/<name>[/path]`) with the query of
   * the latest connection attempt, as the official client gives it: `fetch` it to reach the
   * agent's `onRequest` with the same credentials. It carries the token: keep it out of
   * logs. `""` when no URL can be built (no `host` outside a browser).
   */
  getHttpUrl(): string {
    if (this.#url !== undefined) return httpUrlOf(this.#url);
    try {
      return httpUrlOf(agentUrl(this.#options));
    } catch {
      return "";
    }
  }

  /** `CONNECTING` (0), `OPEN` (1) once accepted, or `CLOSED` (3). */
  get readyState(): number {
    return READY_STATE[this.#status.state];
  }

  /** Where the connection is; see `ConnectionStatus`. */
  get status(): ConnectionStatus {
    return this.#status;
  }

  /**
   * Replace the agent's state. Applied locally at once and sent to the server, which passes
   * it on to every other connection; sent after reconnecting when disconnected.
   */
  setState(state: State): void {
    this.state = state;
    const text = JSON.stringify({ type: FrameType.State, state });
    if (!this.#transmit(text)) this.#outbox.putState(text);
    this.#options.onStateUpdate?.(state, "client");
  }

  /**
   * Call a `@callable()` method of the agent. Made while disconnected, the call waits for
   * the next accepted connection. Rejects with an `AgentCallError`.
   *
   * @example
   * const total = await client.call<number>("increment", [2], { timeout: 5000 });
   * await client.call("countdown", [3], { stream: { onChunk: (n) => console.log(n) } });
   */
  call<T = unknown>(
    method: string,
    args: unknown[] = [],
    options: CallOptions | StreamCallbacks = {},
  ): Promise<T> {
    const callOptions = splitCallOptions(options);
    const { stream } = callOptions;
    if (this.#status.state === "closed" && this.#status.reason !== "not_started") {
      const error = new AgentCallError(
        "closed",
        method,
        `cannot call ${method}: connection closed`,
      );
      stream?.onError?.(error.message);
      return Promise.reject(error);
    }
    return this.#calls.open<T>(method, callOptions, (id) => {
      const text = JSON.stringify({ type: FrameType.Rpc, id, method, args });
      if (this.#transmit(text)) {
        this.#calls.markSent(id);
        return;
      }
      try {
        this.#outbox.push({ text, callId: id }, method);
      } catch (error) {
        this.#calls.reject(id, error as AgentCallError);
      }
    });
  }

  /**
   * Send a raw message to the agent's `onMessage`. Kept and sent after reconnecting when
   * the connection is down; throws an `AgentCallError` (`queue_full`) when too many wait.
   * Returns `true` when it went out at once, `false` when it waits for the connection (as
   * partysocket's `send` does; the official chat transport reads it).
   */
  send(data: Message): boolean {
    if (this.#transmit(data)) return true;
    this.#outbox.push({ text: data }, "send");
    return false;
  }

  /**
   * Close the connection and stop reconnecting. Calls not yet answered reject with code
   * `closed`; `ready` rejects. `reconnect()` opens it again.
   */
  close(code: number = 1000, reason?: string): void {
    if (this.#status.state === "closed" && this.#status.reason === "closed_by_client") return;
    this.#stopped = true;
    this.#transport.wake();
    // Reject first: calls in flight end as `closed`, not as a lost connection.
    this.#rejectAll(new AgentConnectionError("closed", "connection closed by the client"));
    this.#transport.close(code, reason);
    this.#endConnection();
    this.#setStatus({ state: "closed", reason: "closed_by_client" });
  }

  /**
   * Connect again: after `close()`, after a final failure, with `startClosed`, or to drop a
   * live connection and open a fresh one (with fresh credentials). Resets retry counters.
   */
  reconnect(): void {
    const live = !this.#stopped;
    this.#stopped = false;
    this.#attempts.reset();
    this.connectionError = null;
    if (this.#ready.settled) this.#ready = deferred();
    this.#restarting = live;
    this.#setStatus({ state: "connecting", attempt: 1 });
    this.#transport.wake();
    this.#transport.reconnect();
    this.#restarting = false;
  }

  /**
   * Runs before every attempt; partysocket waits on it, so backoff happens here.
   * `undefined` when the client stopped (or failed) meanwhile.
   */
  async #nextUrl(): Promise<string | undefined> {
    for (;;) {
      const delay = this.#attempts.takeDelay();
      if (delay > 0) await this.#transport.sleep(delay);
      if (this.#stopped) return undefined;
      const reason = this.#attempts.begin();
      let query: QueryParams;
      try {
        query = await runQuery(this.#options.query, reason);
        this.#attempts.querySucceeded();
      } catch (error) {
        if (this.#stopped) return undefined;
        const verdict = this.#attempts.queryFailed(describe(error));
        if (!verdict.retry) {
          this.#fail(verdict.code, verdict.message);
          return undefined;
        }
        this.#setStatus(verdict.status);
        continue;
      }
      if (this.#stopped) return undefined;
      if (this.#webSocketClass() === undefined) {
        this.#fail("invalid_options", "no WebSocket class: pass `WebSocket` (e.g. from `ws`)");
        return undefined;
      }
      let url: string;
      try {
        url = agentUrl(this.#options, query);
      } catch (error) {
        this.#fail("invalid_options", describe(error));
        return undefined;
      }
      this.#refresh.use(query);
      this.#url = url;
      return url;
    }
  }

  #webSocketClass(): WebSocketConstructor | undefined {
    return this.#options.WebSocket ?? globalThis.WebSocket;
  }

  #handleOpen(): void {
    this.#identity = undefined;
    this.#stateSeen = false;
    clearTimeout(this.#identityTimer);
    // A socket that opens but never identifies is not an agent (or a stuck one): retry.
    this.#identityTimer = setTimeout(() => {
      if (this.#status.state !== "open" && !this.#stopped) {
        this.#transport.reconnect(1000, "no identity from server");
      }
    }, this.#options.connectionTimeout ?? CLIENT_DEFAULTS.connectionTimeout);
  }

  #handleMessage(event: MessageEvent): void {
    const data: unknown = event.data;
    if (typeof data !== "string" || data.charCodeAt(0) !== 123 /* { */) {
      this.#options.onMessage?.(event);
      return;
    }
    let frame: Record<string, unknown>;
    try {
      frame = JSON.parse(data);
    } catch {
      this.#options.onMessage?.(event);
      return;
    }
    switch (frame?.type) {
      case FrameType.Identity:
        this.#identity = { name: String(frame.name), agent: String(frame.agent) };
        if (frame.stateFollows !== true || this.#stateSeen) this.#accept();
        return;
      case FrameType.State:
        this.#applyServerState(frame.state as State);
        return;
      case FrameType.StateError:
        this.#options.onStateUpdateError?.(String(frame.error));
        return;
      case FrameType.Rpc:
        this.#calls.answer(frame as unknown as RpcResponseFrame);
        return;
      case FrameType.AuthResult:
        this.#refresh.answer({ ok: frame.ok === true, code: String(frame.code ?? "") });
        return;
      case FrameType.McpServers:
        this.#options.onMcpUpdate?.(frame.mcp);
        return;
      default:
        this.#options.onMessage?.(event);
    }
  }

  #applyServerState(state: State): void {
    const handshake = this.#status.state !== "open";
    // A write made while disconnected is about to be sent and will replace the snapshot the
    // server just sent; showing the snapshot first would flash the old state.
    if (!(handshake && this.#outbox.hasState())) {
      this.state = state;
      this.#options.onStateUpdate?.(state, "server");
    }
    this.#stateSeen = true;
    if (handshake && this.#identity !== undefined) this.#accept();
  }

  /** The server accepted this connection: send what waited, then tell everyone. */
  #accept(): void {
    if (this.#status.state === "open" || this.#identity === undefined) return;
    clearTimeout(this.#identityTimer);
    this.#openedAt = Date.now();
    this.#attempts.accepted();
    this.#lastClose = undefined;
    this.connectionError = null;
    this.#noticeIdentityChange(this.#identity);
    this.#identified = true;
    this.name = this.#identity.name;
    this.agent = this.#identity.agent;
    this.#setStatus({ state: "open" });
    this.#outbox.flush((frame) => {
      // A call that timed out or was rejected while it waited is not sent.
      if (frame.callId !== undefined && !this.#calls.has(frame.callId)) return true;
      if (!this.#transport.send(frame.text)) return false;
      if (frame.callId !== undefined) this.#calls.markSent(frame.callId);
      return true;
    });
    this.#refresh.start();
    this.#ready.resolve();
    this.#options.onIdentity?.(this.name, this.agent);
    this.#options.onOpen?.();
    if (this.#events.has("open")) this.#events.emit("open", new Event("open"));
  }

  #noticeIdentityChange(identity: { name: string; agent: string }): void {
    const previous = this.#previousIdentity;
    this.#previousIdentity = identity;
    if (previous === undefined) return;
    if (previous.name === identity.name && previous.agent === identity.agent) return;
    if (this.#options.onIdentityChange) {
      this.#options.onIdentityChange(previous.name, identity.name, previous.agent, identity.agent);
    } else {
      console.warn(
        `AgentClient: reconnected to another instance (${previous.agent}/${previous.name} → ${identity.agent}/${identity.name}); pass onIdentityChange to handle it`,
      );
    }
  }

  /** partysocket asks this on every close; the answer decides whether it reconnects. */
  #handleClose(
    event: { code: number; reason?: string },
    failure: HandshakeFailure | undefined,
  ): boolean {
    const { code } = event;
    const reason = event.reason ?? "";
    const wasOpen = this.#status.state === "open";
    // partysocket reports a failed handshake as close 1000; it was an abnormal closure.
    const close = failure === undefined ? { code, reason } : { code: 1006, reason: "" };
    this.#endConnection();
    this.#options.onClose?.(close);
    if (this.#events.has("close")) {
      // A failed handshake gets a 1006 event of its own, not partysocket's made-up 1000.
      this.#events.emit(
        "close",
        closeEvent(failure === undefined ? event : undefined, close.code, close.reason),
      );
    }
    if (this.#stopped) return false;
    if (this.#restarting) return true;
    this.#lastClose = close;
    const verdict = this.#attempts.afterClose(
      { code, reason, close, failure, openFor: wasOpen ? Date.now() - this.#openedAt : undefined },
      {
        agent: this.agent,
        name: this.name,
        where: this.#url === undefined ? "the server" : hostAndPort(this.#url),
      },
    );
    if (!verdict.retry) {
      this.#fail(verdict.code, verdict.message, close);
      return false;
    }
    this.#setStatus(verdict.status);
    return true;
  }

  /** Forget the connection that just ended; calls it carried cannot be answered now. */
  #endConnection(): void {
    clearTimeout(this.#identityTimer);
    this.#refresh.stop();
    this.#identity = undefined;
    this.#identified = false;
    this.#stateSeen = false;
    // The next connection gets a fresh `ready`; a stopped client's is rejected instead.
    if (this.#ready.settled && !this.#stopped) this.#ready = deferred();
    this.#calls.loseSent();
  }

  #fail(code: ConnectionErrorCode, message: string, close?: CloseInfo): void {
    const error = new AgentConnectionError(code, message, close ?? this.#lastClose);
    this.#stopped = true;
    this.#transport.wake();
    this.#transport.close();
    this.#endConnection();
    this.#rejectAll(error);
    this.connectionError = error;
    this.#setStatus({ state: "closed", reason: "failed", error });
    this.#options.onConnectionError?.(error);
  }

  #rejectAll(cause: AgentConnectionError): void {
    if (this.#ready.settled) this.#ready = deferred();
    this.#ready.reject(cause);
    this.#calls.rejectAll(cause);
    this.#outbox.dropCalls();
  }

  /** Send now if the server has accepted this connection; `false` when it must wait. */
  #transmit(text: Message): boolean {
    return this.#status.state === "open" && this.#transport.send(text);
  }

  #setStatus(status: ConnectionStatus): void {
    this.#status = status;
    this.#options.onStatusChange?.(status);
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

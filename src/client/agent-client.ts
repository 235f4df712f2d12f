import ReconnectingWebSocket, { type Message } from "partysocket/ws";
import { agentNameToKebab, FrameType, type RpcResponseFrame } from "../protocol/frames.js";
import { AgentCallError, AgentConnectionError, type ConnectionErrorCode } from "./errors.js";
import {
  type AgentClientEventMap,
  type AgentClientEventType,
  type AgentClientListener,
  type AgentClientListenerOptions,
  ClientEvents,
  closeEvent,
} from "./events.js";
import {
  type HandshakeFailure,
  hostAndPort,
  observeErrors,
  readHandshakeFailure,
} from "./handshake-failure.js";
import { readTokenTimes, refreshTime } from "./jwt.js";
import {
  backoffDelay,
  classifyClose,
  type ReconnectOptions,
  type ResolvedReconnectOptions,
  resolveReconnectOptions,
} from "./reconnect.js";
import { type AgentAddress, agentUrl, httpUrlOf, type QueryParams } from "./url.js";

/** Why `query` is being run, so a caching wrapper knows when a cached token will not do. */
export type QueryReason =
  /** First connection (also after `reconnect()`). */
  | "connect"
  /** Reconnecting after the connection dropped. */
  | "reconnect"
  /** The server closed 4001: the credentials it had were refused. */
  | "unauthorized"
  /** The token in use is near its expiry; it will be sent in-band. */
  | "refresh";

/** Passed to a `query` function. Functions that ignore it (like the page's) work as they are. */
export interface QueryContext {
  reason: QueryReason;
}

/** Query parameters, or a sync or async function run before every connection attempt. */
export type QueryOption =
  | QueryParams
  | ((context: QueryContext) => QueryParams | Promise<QueryParams>);

/** A WebSocket class: the browser's, or e.g. the `ws` package's in Node. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => object;

/** Close code and reason as the client saw them. */
export interface CloseInfo {
  code: number;
  reason: string;
}

/**
 * Where the connection is. One value, not a set of flags:
 * `connecting` (backing off, fetching credentials, or in the handshake) → `open` (the server
 * accepted the credentials and sent its identity and state) → `connecting` again after a
 * recoverable drop, or `closed` for good with a reason.
 */
export type ConnectionStatus =
  | {
      readonly state: "connecting";
      /** Attempt number since the last healthy connection, from 1. */
      readonly attempt: number;
      /** The close that led to this attempt, if any. */
      readonly lastClose?: CloseInfo;
      /** Milliseconds this attempt waits before it starts. */
      readonly delay?: number;
      /** What the last attempt ran into, when the client could tell (e.g. `unreachable`). */
      readonly error?: AgentConnectionError;
    }
  | { readonly state: "open" }
  | {
      readonly state: "closed";
      /** `not_started`: made with `startClosed`; `closed_by_client`: `close()`; `failed`: see `error`. */
      readonly reason: "not_started" | "closed_by_client" | "failed";
      readonly error?: AgentConnectionError;
    };

/** Callbacks for a streaming call. Errors are strings, as on the wire. */
export interface StreamCallbacks {
  onChunk?: (chunk: unknown) => void;
  onDone?: (finalChunk: unknown) => void;
  onError?: (error: string) => void;
}

/** Options of one `call()`. */
export interface CallOptions {
  /**
   * Milliseconds until the call rejects with code `timeout`, counted from `call()` (time
   * spent queued while disconnected included). 0 disables. Default: `defaultCallTimeout`
   * for plain calls, none for streaming calls.
   */
  timeout?: number;
  /** Receive a streaming method's chunks. */
  stream?: StreamCallbacks;
}

/** In-band token refresh settings. */
export interface RefreshOptions {
  /** Fraction of the token's life after which a new one is fetched. Default 0.8. */
  at?: number;
  /** Milliseconds to wait for the server's `outpost_auth_result`. Default 5000. */
  timeout?: number;
}

/** Options of `AgentClient`. */
export interface AgentClientOptions<State = unknown> extends AgentAddress {
  /** Query parameters (e.g. `{ token }`), or a function run before every connection attempt. */
  query?: QueryOption;
  /** WebSocket class to use; required where there is no global `WebSocket` (Node 20). */
  WebSocket?: WebSocketConstructor;
  /** The agent's state changed: from the server, or by this client's `setState`. */
  onStateUpdate?: (state: State, source: "server" | "client") => void;
  /** The server refused a `setState` from this client. */
  onStateUpdateError?: (error: string) => void;
  /** The server named the instance this connection reached. */
  onIdentity?: (name: string, agent: string) => void;
  /**
   * A reconnect reached another instance than the last connection did (a server that routes
   * by session, with `basePath`). Without it, the change is logged with `console.warn`.
   */
  onIdentityChange?: (oldName: string, newName: string, oldAgent: string, newAgent: string) => void;
  /**
   * The server's MCP server list (`cf_agent_mcp_servers`), as the official client reports it.
   * An Outpost server sends an empty one on every connect.
   */
  onMcpUpdate?: (mcp: unknown) => void;
  /**
   * The server accepted the connection (identity and state received). Not called on a raw
   * socket open: an Outpost server accepts the upgrade even when it refuses the credentials.
   */
  onOpen?: () => void;
  /** The socket closed, for whatever reason; the client may reconnect afterwards. */
  onClose?: (event: CloseInfo) => void;
  /** A message the framework does not own (the agent's own `connection.send`). */
  onMessage?: (event: MessageEvent) => void;
  /** The connection ended for good; `connectionError` holds the same error. */
  onConnectionError?: (error: AgentConnectionError) => void;
  /** Every change of `status`. */
  onStatusChange?: (status: ConnectionStatus) => void;
  /** Backoff and retry limits. */
  reconnect?: ReconnectOptions;
  /** Milliseconds for the socket to open and the server to send its identity. Default 10000. */
  connectionTimeout?: number;
  /** Timeout of plain calls that do not pass one. Default 30000; 0 disables. */
  defaultCallTimeout?: number;
  /** In-band token refresh (`false` turns it off). */
  refresh?: RefreshOptions | false;
  /** Messages kept while disconnected; beyond this `send`/`call` fail with `queue_full`. Default 1000. */
  maxQueuedMessages?: number;
  /** Do not connect until `reconnect()` is called. */
  startClosed?: boolean;
}

/** `stub.method(...args)` is `call("method", args)`. */
export type AgentStub = Record<string, (...args: unknown[]) => Promise<unknown>>;

interface PendingCall {
  method: string;
  resolve: (value: unknown) => void;
  reject: (error: AgentCallError) => void;
  stream: StreamCallbacks | undefined;
  /** Sent on the current connection: if it drops now, the call's fate is unknown. */
  sent: boolean;
  timer: ReturnType<typeof setTimeout> | undefined;
}

interface QueuedFrame {
  text: Message;
  callId?: string;
  isState?: boolean;
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: Error) => void;
  settled: boolean;
}

/**
 * partysocket re-dispatches every event of the socket as a copy; the client reads them
 * through the `on*` handlers instead, which partysocket calls first with the original.
 * Skipping the copy saves an allocation per frame, and avoids a crash where the event
 * classes of two realms meet (jsdom's `Event` on Node's `EventTarget` in component tests).
 */
class QuietSocket extends ReconnectingWebSocket {
  override dispatchEvent(_event: Event): boolean {
    return true;
  }
}

/** Property names runtimes and test libraries probe on any object; never RPC methods. */
const PROBED_PROPERTIES = new Set([
  "then",
  "catch",
  "finally",
  "toJSON",
  "valueOf",
  "toString",
  "constructor",
  "prototype",
  "$$typeof",
  "@@toStringTag",
  "asymmetricMatch",
  "nodeType",
  "inspect",
]);

const READY_STATE = { connecting: 0, open: 1, closed: 3 } as const;
/** Returned to partysocket after the client stopped; partysocket drops it unused. */
const UNUSED_URL = "ws://127.0.0.1:9/";
const MAX_TIMER = 2_147_483_647;

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
  readonly #retry: ResolvedReconnectOptions;
  readonly #refresh: { enabled: boolean; at: number; timeout: number };
  readonly #socket: ReconnectingWebSocket;
  #status: ConnectionStatus;
  #ready = deferred();

  readonly #pending = new Map<string, PendingCall>();
  readonly #events = new ClientEvents();
  #queue: QueuedFrame[] = [];
  readonly #idPrefix = Math.random().toString(36).slice(2, 10);
  #nextId = 0;

  /** Set by `close()` and by a final failure; cleared by `reconnect()`. */
  #stopped: boolean;
  /** `reconnect()` on a live socket: its close is not a failure. */
  #restarting = false;
  /** Attempts since the last healthy connection. */
  #attempt = 0;
  /** 4001 closes since the last accepted connection. */
  #authFailures = 0;
  #queryFailures = 0;
  #nextDelay = 0;
  #nextReason: QueryReason = "connect";
  #lastClose: CloseInfo | undefined;
  /** What the current socket's `error` event said, read before partysocket's close. */
  #handshakeFailure: HandshakeFailure | undefined;
  /** The server has accepted this client at least once (a later refusal is a restart). */
  #everAccepted = false;
  /** Refused connections in a row while never accepted. */
  #unreachable = 0;
  #wake: (() => void) | undefined;

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

  /** Token the current connection was opened or last refreshed with. */
  #token: string | undefined;
  #tokenReceivedAt = 0;
  #refreshTimer: ReturnType<typeof setTimeout> | undefined;
  #authWaiter: ((frame: { ok: boolean; code?: string } | undefined) => void) | undefined;
  /** Counts connections, so a refresh that outlives its connection does nothing. */
  #connection = 0;

  constructor(options: AgentClientOptions<State>) {
    this.#options = options;
    this.#retry = resolveReconnectOptions(options.reconnect);
    const refresh = options.refresh === false ? {} : (options.refresh ?? {});
    this.#refresh = {
      enabled: options.refresh !== false,
      at: refresh.at ?? 0.8,
      timeout: refresh.timeout ?? 5000,
    };
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
    this.stub = new Proxy({} as AgentStub, {
      get: (_target, property) => {
        if (typeof property !== "string" || PROBED_PROPERTIES.has(property)) return undefined;
        return (...args: unknown[]) => this.call(property, args);
      },
    });

    // partysocket owns the socket's life: opening, the connect timeout, listener hygiene.
    // Its delays are zeroed because the URL provider below does the waiting: partysocket's
    // backoff has no jitter, cannot wait the time a 4008 asks for, and it would flush
    // queued frames on a bare socket open — before the server has accepted the credentials.
    this.#socket = new QuietSocket(() => this.#nextUrl(), undefined, {
      WebSocket: observeErrors(
        () => options.WebSocket ?? globalThis.WebSocket,
        (event) => {
          this.#handshakeFailure = readHandshakeFailure(event);
        },
      ),
      minReconnectionDelay: 0,
      maxReconnectionDelay: 0,
      connectionTimeout: options.connectionTimeout ?? 10_000,
      maxEnqueuedMessages: 0,
      startClosed: this.#stopped,
      shouldReconnectOnClose: (event) => this.#handleClose(event),
    });
    this.#socket.onopen = () => this.#handleOpen();
    this.#socket.onmessage = (event) => {
      this.#handleMessage(event);
      if (this.#events.has("message")) this.#events.emit("message", event);
    };
    this.#socket.onerror = (event) => this.#events.emit("error", event as Event);
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
    if (!this.#transmit(text)) {
      // Only the last write matters: replace a queued one instead of replaying each.
      const queued = this.#queue.findIndex((frame) => frame.isState);
      if (queued === -1) this.#enqueue({ text, isState: true }, "setState");
      else this.#queue[queued] = { text, isState: true };
    }
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
    const { timeout: given, stream } = splitCallOptions(options);
    if (this.#status.state === "closed" && this.#status.reason !== "not_started") {
      const error = new AgentCallError(
        "closed",
        method,
        `cannot call ${method}: connection closed`,
      );
      stream?.onError?.(error.message);
      return Promise.reject(error);
    }
    const timeout = given ?? (stream ? 0 : (this.#options.defaultCallTimeout ?? 30_000));
    const id = `${this.#idPrefix}-${++this.#nextId}`;
    return new Promise<T>((resolve, reject) => {
      const pending: PendingCall = {
        method,
        resolve: resolve as (value: unknown) => void,
        reject: (error) => {
          stream?.onError?.(error.message);
          reject(error);
        },
        stream,
        sent: false,
        timer: undefined,
      };
      if (timeout > 0) {
        pending.timer = setTimeout(
          () => {
            this.#pending.delete(id);
            this.#queue = this.#queue.filter((frame) => frame.callId !== id);
            pending.reject(
              new AgentCallError(
                "timeout",
                method,
                `call to ${method} timed out after ${timeout}ms`,
              ),
            );
          },
          Math.min(timeout, MAX_TIMER),
        );
      }
      this.#pending.set(id, pending);
      const text = JSON.stringify({ type: FrameType.Rpc, id, method, args });
      if (this.#transmit(text)) {
        pending.sent = true;
        return;
      }
      try {
        this.#enqueue({ text, callId: id }, method);
      } catch (error) {
        this.#settle(id);
        pending.reject(error as AgentCallError);
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
    this.#enqueue({ text: data }, "send");
    return false;
  }

  /**
   * Close the connection and stop reconnecting. Calls not yet answered reject with code
   * `closed`; `ready` rejects. `reconnect()` opens it again.
   */
  close(code: number = 1000, reason?: string): void {
    if (this.#status.state === "closed" && this.#status.reason === "closed_by_client") return;
    this.#stopped = true;
    this.#wake?.();
    // Reject first: calls in flight end as `closed`, not as a lost connection.
    this.#rejectAll(new AgentConnectionError("closed", "connection closed by the client"));
    this.#socket.close(code, reason);
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
    this.#attempt = 0;
    this.#authFailures = 0;
    this.#queryFailures = 0;
    this.#unreachable = 0;
    this.#nextDelay = 0;
    this.#nextReason = "connect";
    this.connectionError = null;
    if (this.#ready.settled) this.#ready = deferred();
    this.#restarting = live;
    this.#setStatus({ state: "connecting", attempt: 1 });
    this.#wake?.();
    this.#socket.reconnect();
    this.#restarting = false;
  }

  /** Runs before every attempt; partysocket waits on it, so backoff happens here. */
  async #nextUrl(): Promise<string> {
    for (;;) {
      const delay = this.#nextDelay;
      this.#nextDelay = 0;
      if (delay > 0) await this.#sleep(delay);
      if (this.#stopped) return UNUSED_URL;
      this.#attempt++;
      const reason = this.#nextReason;
      let query: QueryParams;
      try {
        query = await this.#runQuery(reason);
        this.#queryFailures = 0;
      } catch (error) {
        if (this.#stopped) return UNUSED_URL;
        // Like a refused token: a few tries, then tell the app (the user may be logged out).
        if (++this.#queryFailures > this.#retry.maxAuthRetries) {
          this.#fail("query_failed", `query failed: ${describe(error)}`);
          return UNUSED_URL;
        }
        this.#nextDelay = backoffDelay(this.#attempt, this.#retry);
        this.#setStatus({
          state: "connecting",
          attempt: this.#attempt + 1,
          delay: this.#nextDelay,
        });
        continue;
      }
      if (this.#stopped) return UNUSED_URL;
      const WebSocketClass = this.#options.WebSocket ?? globalThis.WebSocket;
      if (WebSocketClass === undefined) {
        this.#fail("invalid_options", "no WebSocket class: pass `WebSocket` (e.g. from `ws`)");
        return UNUSED_URL;
      }
      let url: string;
      try {
        url = agentUrl(this.#options, query);
      } catch (error) {
        this.#fail("invalid_options", describe(error));
        return UNUSED_URL;
      }
      this.#token = typeof query.token === "string" ? query.token : undefined;
      this.#tokenReceivedAt = Date.now();
      this.#url = url;
      this.#handshakeFailure = undefined;
      return url;
    }
  }

  async #runQuery(reason: QueryReason): Promise<QueryParams> {
    const { query } = this.#options;
    if (query === undefined) return {};
    return typeof query === "function" ? await query({ reason }) : query;
  }

  /** A wait that `close()` and `reconnect()` cut short. */
  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        if (this.#wake === wake) this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(wake, Math.min(ms, MAX_TIMER));
      this.#wake = wake;
    });
  }

  #handleOpen(): void {
    this.#identity = undefined;
    this.#stateSeen = false;
    clearTimeout(this.#identityTimer);
    // A socket that opens but never identifies is not an agent (or a stuck one): retry.
    this.#identityTimer = setTimeout(() => {
      if (this.#status.state !== "open" && !this.#stopped) {
        this.#socket.reconnect(1000, "no identity from server");
      }
    }, this.#options.connectionTimeout ?? 10_000);
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
        this.#handleRpc(frame as unknown as RpcResponseFrame);
        return;
      case FrameType.AuthResult:
        this.#authWaiter?.({ ok: frame.ok === true, code: String(frame.code ?? "") });
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
    if (!(handshake && this.#queue.some((frame) => frame.isState))) {
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
    this.#connection++;
    this.#openedAt = Date.now();
    this.#authFailures = 0;
    this.#everAccepted = true;
    this.#unreachable = 0;
    this.#lastClose = undefined;
    this.connectionError = null;
    this.#noticeIdentityChange(this.#identity);
    this.#identified = true;
    this.name = this.#identity.name;
    this.agent = this.#identity.agent;
    this.#setStatus({ state: "open" });
    const queue = this.#queue;
    this.#queue = [];
    for (const [index, frame] of queue.entries()) {
      if (frame.callId !== undefined && !this.#pending.has(frame.callId)) continue;
      if (!this.#socket.send(frame.text)) {
        // The socket went away mid-flush: keep the rest for the next connection.
        this.#queue = [...queue.slice(index), ...this.#queue];
        break;
      }
      const call = frame.callId === undefined ? undefined : this.#pending.get(frame.callId);
      if (call) call.sent = true;
    }
    this.#scheduleRefresh();
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

  #handleRpc(frame: RpcResponseFrame): void {
    const pending = this.#pending.get(frame.id);
    if (pending === undefined) return; // timed out or rejected on a drop: nobody waits
    if (!frame.success) {
      this.#settle(frame.id);
      pending.reject(new AgentCallError("remote_error", pending.method, String(frame.error)));
      return;
    }
    if (frame.done === false) {
      pending.stream?.onChunk?.(frame.result);
      return;
    }
    this.#settle(frame.id);
    pending.stream?.onDone?.(frame.result);
    pending.resolve(frame.result);
  }

  /** partysocket asks this on every close; the answer decides whether it reconnects. */
  #handleClose(event: { code: number; reason?: string }): boolean {
    const { code } = event;
    const reason = event.reason ?? "";
    const wasOpen = this.#status.state === "open";
    const failure = this.#handshakeFailure;
    this.#handshakeFailure = undefined;
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
    if (wasOpen && Date.now() - this.#openedAt >= this.#retry.minUptime) this.#attempt = 0;
    this.#lastClose = close;
    const where = this.#url === undefined ? "the server" : hostAndPort(this.#url);
    if (failure?.kind === "http" && failure.status === 404) {
      const path = `/agents/${this.agent}/${this.name}`;
      this.#fail("not_found", `no agent "${this.agent}" at ${where} (HTTP 404 for ${path})`, close);
      return false;
    }
    let unreachable: AgentConnectionError | undefined;
    if (failure?.kind === "unreachable") {
      const message = `no server at ${where} (${failure.cause})`;
      if (!this.#everAccepted && ++this.#unreachable > this.#retry.maxUnreachableRetries) {
        this.#fail("unreachable", message, close);
        return false;
      }
      unreachable = new AgentConnectionError("unreachable", message, close);
    }
    const action = classifyClose(code, reason);
    if (action.kind === "stop" && action.code === "not_found") {
      const message = `no agent "${this.agent}" at ${where}${reason ? `: ${reason}` : ""}`;
      this.#fail("not_found", message, close);
      return false;
    }
    if (action.kind === "stop") {
      this.#fail(action.code, `connection refused (${code}${reason ? `: ${reason}` : ""})`, close);
      return false;
    }
    if (action.kind === "reauthenticate") {
      this.#authFailures++;
      if (this.#authFailures > this.#retry.maxAuthRetries) {
        this.#fail("unauthorized", `credentials refused ${this.#authFailures} times`, close);
        return false;
      }
    }
    if (this.#attempt >= this.#retry.maxRetries) {
      const last = unreachable ? `; last: ${unreachable.message}` : "";
      this.#fail("retries_exhausted", `gave up after ${this.#attempt} attempts${last}`, close);
      return false;
    }
    this.#nextReason = action.kind === "reauthenticate" ? "unauthorized" : "reconnect";
    this.#nextDelay =
      action.kind === "wait"
        ? Math.round((action.ms ?? this.#retry.maxDelay) * (1 + 0.1 * Math.random()))
        : backoffDelay(Math.max(1, this.#attempt), this.#retry);
    this.#setStatus({
      state: "connecting",
      attempt: this.#attempt + 1,
      lastClose: close,
      delay: this.#nextDelay,
      ...(unreachable && { error: unreachable }),
    });
    return true;
  }

  /** Forget the connection that just ended; calls it carried cannot be answered now. */
  #endConnection(): void {
    clearTimeout(this.#identityTimer);
    clearTimeout(this.#refreshTimer);
    this.#authWaiter?.(undefined);
    this.#identity = undefined;
    this.#identified = false;
    this.#stateSeen = false;
    // The next connection gets a fresh `ready`; a stopped client's is rejected instead.
    if (this.#ready.settled && !this.#stopped) this.#ready = deferred();
    for (const [id, pending] of this.#pending) {
      if (!pending.sent) continue;
      this.#settle(id);
      pending.reject(
        new AgentCallError(
          "connection_lost",
          pending.method,
          `connection lost before ${pending.method} answered; it may or may not have run`,
        ),
      );
    }
  }

  #fail(code: ConnectionErrorCode, message: string, close?: CloseInfo): void {
    const error = new AgentConnectionError(code, message, close ?? this.#lastClose);
    this.#stopped = true;
    this.#wake?.();
    this.#socket.close();
    this.#endConnection();
    this.#rejectAll(error);
    this.connectionError = error;
    this.#setStatus({ state: "closed", reason: "failed", error });
    this.#options.onConnectionError?.(error);
  }

  #rejectAll(cause: AgentConnectionError): void {
    if (this.#ready.settled) this.#ready = deferred();
    this.#ready.reject(cause);
    for (const [id, pending] of this.#pending) {
      this.#settle(id);
      pending.reject(
        new AgentCallError(
          "closed",
          pending.method,
          `${pending.method} not answered: ${cause.message}`,
        ),
      );
    }
    this.#queue = this.#queue.filter((frame) => frame.callId === undefined);
  }

  #settle(id: string): void {
    const pending = this.#pending.get(id);
    if (pending === undefined) return;
    clearTimeout(pending.timer);
    this.#pending.delete(id);
  }

  /** Send now if the server has accepted this connection; `false` when it must wait. */
  #transmit(text: Message): boolean {
    return this.#status.state === "open" && this.#socket.send(text);
  }

  #enqueue(frame: QueuedFrame, what: string): void {
    if (this.#queue.length >= (this.#options.maxQueuedMessages ?? 1000)) {
      throw new AgentCallError("queue_full", what, "too many messages waiting for the connection");
    }
    this.#queue.push(frame);
  }

  #setStatus(status: ConnectionStatus): void {
    this.#status = status;
    this.#options.onStatusChange?.(status);
  }

  #scheduleRefresh(): void {
    clearTimeout(this.#refreshTimer);
    if (!this.#refresh.enabled || this.#token === undefined) return;
    const times = readTokenTimes(this.#token);
    if (times === undefined) return;
    const at = refreshTime(times, this.#tokenReceivedAt, this.#refresh.at);
    const connection = this.#connection;
    this.#refreshTimer = setTimeout(
      () => void this.#refreshToken(connection, times.expiresAt),
      Math.min(Math.max(0, at - Date.now()), MAX_TIMER),
    );
  }

  /**
   * Fetch a fresh token and hand it to the server over the open connection. Whatever goes
   * wrong, the connection is left alone: if the server enforces expiry it closes 4001
   * later, and that close is answered with fresh credentials like any other.
   */
  async #refreshToken(connection: number, expiresAt: number): Promise<void> {
    const current = () => this.#connection === connection && this.#status.state === "open";
    let token: unknown;
    try {
      token = (await this.#runQuery("refresh")).token;
    } catch {
      token = undefined;
    }
    if (!current()) return;
    if (typeof token !== "string" || token === "" || token === this.#token) {
      // No new token yet (e.g. a cached one): try again halfway to expiry while there is time.
      const left = expiresAt - Date.now();
      if (left > 2000)
        this.#refreshTimer = setTimeout(
          () => void this.#refreshToken(connection, expiresAt),
          left / 2,
        );
      return;
    }
    const answer = new Promise<{ ok: boolean; code?: string } | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), this.#refresh.timeout);
      this.#authWaiter = (frame) => {
        clearTimeout(timer);
        this.#authWaiter = undefined;
        resolve(frame);
      };
    });
    if (!this.#transmit(JSON.stringify({ type: FrameType.Auth, token }))) return;
    const result = await answer;
    if (!current() || result === undefined || !result.ok) return;
    this.#token = token;
    this.#tokenReceivedAt = Date.now();
    this.#scheduleRefresh();
  }
}

function splitCallOptions(options: CallOptions | StreamCallbacks): CallOptions {
  // Cloudflare's older signature passes the stream callbacks directly.
  if ("onChunk" in options || "onDone" in options || "onError" in options) {
    return { stream: options as StreamCallbacks };
  }
  return options as CallOptions;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

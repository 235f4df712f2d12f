import { AuthError } from "../auth/errors.js";
import type { AuthAction, AuthClaims, AuthSession } from "../auth/policy.js";
import { CloseCode } from "../protocol/close-codes.js";
import { FrameType, type ServerFrame } from "../protocol/frames.js";
import type { Agent } from "./agent.js";
import type { ConnectionAuth } from "./connection-auth.js";
import { AgentScope } from "./context.js";
import { type Expiring, expiryClock } from "./expiry-clock.js";
import { isThenable } from "./shared.js";

/** What a frame handler may be: synchronous or async. */
type Task = () => unknown;

/**
 * One client's WebSocket to an agent instance, as agent code sees it.
 *
 * @example
 * onConnect(connection: Connection<{ userId: string }>) {
 *   connection.setState({ userId: connection.auth?.sub ?? "anonymous" });
 *   connection.send(JSON.stringify({ hello: connection.state?.userId }));
 * }
 */
export interface Connection<State = unknown> {
  /** Chosen by the server; unique per connection. */
  readonly id: string;
  /** Per-connection state set with `setState`; `undefined` until then. */
  readonly state: State | undefined;
  /** Replace the per-connection state, or derive it from the previous one. */
  setState(next: State | ((previous: State | undefined) => State)): State;
  /** Verified token claims when the server has `auth`; `undefined` otherwise. */
  readonly auth: AuthClaims | undefined;
  /** A read-only connection's state writes are refused with `cf_agent_state_error`. */
  readonly readonly: boolean;
  /** The request URL, with credentials redacted. */
  readonly uri: string;
  /** Client address as seen by the server. */
  readonly remoteAddress: string;
  /** The connection's id, then the tags the agent's `getConnectionTags` gave it. */
  readonly tags: readonly string[];
  /** Send a text or binary frame to this client. Returns false when it is not open. */
  send(message: string | ArrayBuffer | ArrayBufferView): boolean;
  /** Close this connection. */
  close(code?: number, reason?: string): void;
}

/**
 * What a connection writes to: a `ws` WebSocket for a client on this node, or a stream over
 * a node link for a client that another node of the cluster admitted.
 */
export interface ConnectionSocket {
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(message: string | ArrayBuffer | ArrayBufferView): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
  /** Absent for a connection carried from another node: that node checks its client. */
  ping?(): void;
}

/**
 * Holds a turn's output until its changes are durable (cluster mode): every send of an
 * instance goes through it, in order.
 */
export interface OutputGate {
  send(socket: ConnectionSocket, message: string | ArrayBuffer | ArrayBufferView): void;
}

/** Limits applied to one connection. */
export interface ConnectionLimits {
  /** Bytes queued for a client that does not read before it is dropped. */
  maxBufferedBytes: number;
  /** Frames waiting behind a slow handler before the client is told to back off. */
  maxQueuedFrames: number;
}

/**
 * The server side of a `Connection`. Frames from one client are handled strictly in the
 * order they arrive: a handler that returns a promise holds the next frame until it
 * settles, so a slow async handler cannot reorder them.
 */
export class ServerConnection<State = unknown> implements Connection<State>, Expiring {
  readonly id: string;
  readonly remoteAddress: string;
  /** The code this side closed with, once `close()` was called. */
  closedWith: number | undefined;
  /** Credentials and the questions asked before each action; `undefined` without `auth`. */
  readonly #auth: ConnectionAuth | undefined;
  #readonly = false;
  #accepted = false;
  #state: State | undefined;
  readonly #socket: ConnectionSocket;
  readonly #gate: OutputGate | undefined;
  readonly #limits: ConnectionLimits;
  /** Tasks waiting behind a running one; made when the first has to wait. */
  #queue: Task[] | undefined;
  #busy = false;
  #uri: string | (() => string);
  /** Unset until `getConnectionTags` returns some: most connections have none to keep. */
  #tags: readonly string[] | undefined;
  #awaitingPong = false;
  /** The expiry clock's tick this connection waits for, when armed. */
  #expiryTick: number | undefined;
  /** Made at this connection's first frame: an idle connection holds none. */
  #frameScope: AgentScope | undefined;
  readonly #onTaskError: (connection: ServerConnection, error: unknown) => void;

  constructor(options: {
    id: string;
    socket: ConnectionSocket;
    /** The instance's output gate, in cluster mode. */
    gate?: OutputGate | undefined;
    /** The request URL with credentials redacted, computed when first read. */
    uri: () => string;
    remoteAddress: string;
    auth: ConnectionAuth | undefined;
    limits: ConnectionLimits;
    /** Shared by every connection of an instance: no closure per connection. */
    onTaskError: (connection: ServerConnection, error: unknown) => void;
  }) {
    this.id = options.id;
    this.#socket = options.socket;
    this.#gate = options.gate;
    this.#uri = options.uri;
    this.remoteAddress = options.remoteAddress;
    this.#auth = options.auth;
    this.#limits = options.limits;
    this.#onTaskError = options.onTaskError;
    this.#armExpiry();
  }

  /** The verified session, when the server has `auth`. */
  get session(): AuthSession | undefined {
    return this.#auth?.session;
  }

  get readonly(): boolean {
    return this.#readonly;
  }

  /** Set once `onConnect` has finished and the identity frames are out. */
  get accepted(): boolean {
    return this.#accepted;
  }

  /** Make this connection read-only for the rest of its life (one way). */
  restrict(): void {
    this.#readonly = true;
  }

  /** `onConnect` finished and the identity frames are out: it now receives broadcasts. */
  markAccepted(): void {
    this.#accepted = true;
  }

  /** Has the server revoked this connection's credentials? */
  get revoked(): boolean {
    return this.#auth?.revoked ?? false;
  }

  /**
   * May this connection do `action` now? Returns the refusal's message (counted and logged
   * once), after closing the connection when its credentials are gone (expired, revoked).
   */
  authorize(action: AuthAction): string | undefined {
    if (this.#auth === undefined) return undefined;
    const refusal = this.#auth.check(action, this.uri);
    if (refusal === undefined) return undefined;
    if (refusal.closeCode === CloseCode.Unauthorized || refusal.closeCode === CloseCode.Revoked) {
      this.close(refusal.closeCode, refusal.message);
    }
    return refusal.message;
  }

  /** An `outpost_auth` frame: verify the new token and answer the client. */
  async refreshAuth(token: string): Promise<void> {
    if (this.#auth === undefined) {
      this.sendFrame({
        type: FrameType.AuthResult,
        ok: false,
        code: "auth_not_enabled",
        error: "this server does not use token authentication",
      });
      return;
    }
    let next: AuthSession;
    try {
      next = await this.#auth.refresh(token, this.uri);
    } catch (error) {
      // The connection keeps its current credentials until they expire.
      const refusal = error as AuthError;
      this.sendFrame({
        type: FrameType.AuthResult,
        ok: false,
        code: refusal.code,
        error: refusal.message,
      });
      return;
    }
    if (!this.isOpen) return;
    this.#armExpiry();
    this.sendFrame({
      type: FrameType.AuthResult,
      ok: true,
      ...(next.expiresAt !== undefined && { exp: Math.floor(next.expiresAt / 1000) }),
    });
  }

  #armExpiry(): void {
    this.clearExpiry();
    const expiresAt = this.#auth?.expiresAt;
    if (expiresAt !== undefined) this.#expiryTick = expiryClock.at(expiresAt, this);
  }

  /** @internal The expiry clock: the credentials ran out without a refresh. */
  expire(): void {
    this.#expiryTick = undefined;
    this.#auth?.reportExpired(new AuthError("token_expired"), this.uri);
    this.close(CloseCode.Unauthorized, "token expired");
  }

  get uri(): string {
    if (typeof this.#uri === "function") this.#uri = this.#uri();
    return this.#uri;
  }

  get state(): State | undefined {
    return this.#state;
  }

  get tags(): readonly string[] {
    return this.#tags ?? [this.id];
  }

  /** Set once, while the connection is set up; `tags` starts with the id. */
  setTags(tags: readonly string[]): void {
    this.#tags = tags;
  }

  get auth(): AuthClaims | undefined {
    return this.session?.claims;
  }

  get isOpen(): boolean {
    return this.#socket.readyState === 1;
  }

  setState(next: State | ((previous: State | undefined) => State)): State {
    const value =
      typeof next === "function"
        ? (next as (previous: State | undefined) => State)(this.#state)
        : next;
    this.#state = value;
    return value;
  }

  send(message: string | ArrayBuffer | ArrayBufferView): boolean {
    if (this.#socket.readyState !== 1) return false;
    // A client that stops reading must not make the server buffer without bound.
    if (this.#socket.bufferedAmount > this.#limits.maxBufferedBytes) {
      this.#socket.terminate();
      return false;
    }
    if (this.#gate !== undefined) this.#gate.send(this.#socket, message);
    else this.#socket.send(message);
    return true;
  }

  sendFrame(frame: ServerFrame): boolean {
    return this.send(JSON.stringify(frame));
  }

  /**
   * Send messages that belong together (identity and state) in one TCP write: the socket is
   * corked around them, so the client gets one packet instead of one per message.
   */
  sendAll(messages: readonly string[]): void {
    // ws keeps its net.Socket private; corking it only batches the writes ws makes anyway.
    const raw = (this.#socket as unknown as { _socket?: { cork(): void; uncork(): void } })._socket;
    raw?.cork();
    try {
      for (const message of messages) this.send(message);
    } finally {
      raw?.uncork();
    }
  }

  close(code: number = 1000, reason = ""): void {
    this.clearExpiry();
    if (this.#socket.readyState >= 2) return;
    this.closedWith = code;
    this.#socket.close(code, truncateReason(reason));
  }

  clearExpiry(): void {
    if (this.#expiryTick === undefined) return;
    expiryClock.cancel(this.#expiryTick, this);
    this.#expiryTick = undefined;
  }

  /** @internal What this connection's frames run in: `agent` and this connection current. */
  frameScope(agent: Agent<unknown, unknown>): AgentScope {
    this.#frameScope ??= new AgentScope({ agent, connection: this });
    return this.#frameScope;
  }

  /**
   * Run `task` after every earlier task of this connection has finished. `force` queues
   * it even past the limit (the close notification must never be dropped).
   */
  enqueue(task: Task, force = false): void {
    if (this.#busy) {
      this.#queue ??= [];
      if (!force && this.#queue.length >= this.#limits.maxQueuedFrames) {
        this.close(CloseCode.TryAgainLater, "too many frames in flight");
        return;
      }
      this.#queue.push(task);
      return;
    }
    this.#drain(task);
  }

  #drain(first: Task | undefined): void {
    let task = first;
    while (task !== undefined) {
      let result: unknown;
      try {
        result = task();
      } catch (error) {
        this.#onTaskError(this as ServerConnection, error);
      }
      if (isThenable(result)) {
        this.#busy = true;
        // Closures made only for a task that waits: an idle connection holds none.
        result.then(
          () => this.#next(),
          (error: unknown) => {
            this.#onTaskError(this as ServerConnection, error);
            this.#next();
          },
        );
        return;
      }
      task = this.#queue?.shift();
    }
  }

  #next(): void {
    this.#busy = false;
    this.#drain(this.#queue?.shift());
  }

  /** A handler of this connection is running or waiting. */
  get busy(): boolean {
    return this.#busy || (this.#queue !== undefined && this.#queue.length > 0);
  }

  /**
   * One heartbeat tick: drop the socket if the previous ping went unanswered, else ping.
   * Returns false when the connection was dropped.
   */
  heartbeat(): boolean {
    if (this.#socket.readyState !== 1 || this.#socket.ping === undefined) return true;
    if (this.#awaitingPong) {
      this.terminate();
      return false;
    }
    this.#awaitingPong = true;
    this.#socket.ping();
    return true;
  }

  /** The client answered a ping (or sent anything): it is still there. */
  markAlive(): void {
    this.#awaitingPong = false;
  }

  /** Drop the socket without a close handshake. */
  terminate(): void {
    this.clearExpiry();
    this.#socket.terminate();
  }
}

/** Close reasons are limited to 123 bytes of UTF-8. */
export function truncateReason(reason: string): string {
  if (Buffer.byteLength(reason) <= 123) return reason;
  let out = reason.slice(0, 123);
  while (Buffer.byteLength(out) > 123) out = out.slice(0, -1);
  return out;
}

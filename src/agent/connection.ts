import type { WebSocket } from "ws";
import type { AuthClaims, AuthSession } from "../auth/policy.js";
import { CloseCode } from "../protocol/close-codes.js";
import type { ServerFrame } from "../protocol/frames.js";

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
export class ServerConnection<State = unknown> implements Connection<State> {
  readonly id: string;
  readonly remoteAddress: string;
  session: AuthSession | undefined;
  readonly = false;
  /** Set once the identity frames are out and `onConnect` has finished. */
  accepted = false;
  #state: State | undefined;
  readonly #socket: WebSocket;
  readonly #limits: ConnectionLimits;
  readonly #queue: Task[] = [];
  #busy = false;
  #uri: string | (() => string);
  /** Unset until `getConnectionTags` returns some: most connections have none to keep. */
  #tags: readonly string[] | undefined;
  #awaitingPong = false;
  #expiryTimer: NodeJS.Timeout | undefined;
  readonly #onTaskError: (error: unknown) => void;

  constructor(options: {
    id: string;
    socket: WebSocket;
    /** The request URL with credentials redacted, computed when first read. */
    uri: () => string;
    remoteAddress: string;
    session: AuthSession | undefined;
    limits: ConnectionLimits;
    onTaskError: (error: unknown) => void;
  }) {
    this.id = options.id;
    this.#socket = options.socket;
    this.#uri = options.uri;
    this.remoteAddress = options.remoteAddress;
    this.session = options.session;
    this.#limits = options.limits;
    this.#onTaskError = options.onTaskError;
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
    this.#socket.send(message);
    return true;
  }

  sendFrame(frame: ServerFrame): boolean {
    return this.send(JSON.stringify(frame));
  }

  close(code: number = 1000, reason = ""): void {
    this.clearExpiry();
    if (this.#socket.readyState >= 2) return;
    this.#socket.close(code, truncateReason(reason));
  }

  /** Close after `delayMs` unless `clearExpiry` or another `expireAt` comes first. */
  expireAt(timeMs: number | undefined, onExpire: () => void): void {
    this.clearExpiry();
    if (timeMs === undefined) return;
    // setTimeout overflows past ~24.8 days; re-arm in steps.
    const delay = Math.min(Math.max(0, timeMs - Date.now()), 2 ** 31 - 1);
    this.#expiryTimer = setTimeout(() => {
      if (Date.now() >= timeMs) onExpire();
      else this.expireAt(timeMs, onExpire);
    }, delay);
    this.#expiryTimer.unref();
  }

  clearExpiry(): void {
    if (this.#expiryTimer !== undefined) clearTimeout(this.#expiryTimer);
    this.#expiryTimer = undefined;
  }

  /**
   * Run `task` after every earlier task of this connection has finished. `force` queues
   * it even past the limit (the close notification must never be dropped).
   */
  enqueue(task: Task, force = false): void {
    if (this.#busy) {
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
        this.#onTaskError(error);
      }
      if (isPromiseLike(result)) {
        this.#busy = true;
        result.then(this.#next, (error: unknown) => {
          this.#onTaskError(error);
          this.#next();
        });
        return;
      }
      task = this.#queue.shift();
    }
  }

  readonly #next = (): void => {
    this.#busy = false;
    this.#drain(this.#queue.shift());
  };

  /** A handler of this connection is running or waiting. */
  get busy(): boolean {
    return this.#busy || this.#queue.length > 0;
  }

  /**
   * One heartbeat tick: drop the socket if the previous ping went unanswered, else ping.
   * Returns false when the connection was dropped.
   */
  heartbeat(): boolean {
    if (this.#socket.readyState !== 1) return true;
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

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    typeof value === "object" &&
    typeof (value as PromiseLike<unknown>).then === "function"
  );
}

/** Close reasons are limited to 123 bytes of UTF-8. */
export function truncateReason(reason: string): string {
  if (Buffer.byteLength(reason) <= 123) return reason;
  let out = reason.slice(0, 123);
  while (Buffer.byteLength(out) > 123) out = out.slice(0, -1);
  return out;
}

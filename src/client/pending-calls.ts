import type { RpcResponseFrame } from "../protocol/frames.js";
import { AgentCallError } from "./errors.js";
import { MAX_TIMER } from "./timers.js";

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

interface PendingCall {
  method: string;
  resolve: (value: unknown) => void;
  reject: (error: AgentCallError) => void;
  stream: StreamCallbacks | undefined;
  /** Sent on the current connection: if it drops now, the call's fate is unknown. */
  sent: boolean;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** `call()`'s options in either shape: Cloudflare's older signature passes the callbacks. */
export function splitCallOptions(options: CallOptions | StreamCallbacks): CallOptions {
  if ("onChunk" in options || "onDone" in options || "onError" in options) {
    return { stream: options as StreamCallbacks };
  }
  return options as CallOptions;
}

/**
 * RPC calls waiting for their answer, plain and streaming: ids, timeouts, and how each ends
 * (answered, timed out, lost with its connection, or rejected when the client stops).
 */
export class PendingCalls {
  readonly #calls = new Map<string, PendingCall>();
  readonly #idPrefix = Math.random().toString(36).slice(2, 10);
  #nextId = 0;
  readonly #defaultTimeout: number;
  readonly #onTimeout: (id: string) => void;

  /**
   * `defaultTimeout`: for plain calls that pass none (0: none). `onTimeout` runs when a
   * call times out, before it rejects, so its frame can be dropped from the outbox.
   */
  constructor(defaultTimeout: number, onTimeout: (id: string) => void) {
    this.#defaultTimeout = defaultTimeout;
    this.#onTimeout = onTimeout;
  }

  /**
   * Register a call, then hand its id to `dispatch` to send or queue it. The promise settles
   * when the call is answered or given up; it rejects with whatever `dispatch` throws.
   */
  open<T>(method: string, options: CallOptions, dispatch: (id: string) => void): Promise<T> {
    const { timeout: given, stream } = options;
    const timeout = given ?? (stream ? 0 : this.#defaultTimeout);
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
            this.#calls.delete(id);
            this.#onTimeout(id);
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
      this.#calls.set(id, pending);
      dispatch(id);
    });
  }

  /** True while call `id` waits for its answer. */
  has(id: string): boolean {
    return this.#calls.has(id);
  }

  /** Call `id` went out on the current connection. */
  markSent(id: string): void {
    const call = this.#calls.get(id);
    if (call) call.sent = true;
  }

  /** Reject call `id` now (e.g. it could not be queued). */
  reject(id: string, error: AgentCallError): void {
    const pending = this.#calls.get(id);
    if (pending === undefined) return;
    this.#settle(id);
    pending.reject(error);
  }

  /** An `rpc` frame from the server: a chunk, the result, or the method's error. */
  answer(frame: RpcResponseFrame): void {
    const pending = this.#calls.get(frame.id);
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

  /**
   * The connection dropped: calls sent on it reject with `connection_lost` (they may or may
   * not have run, so they are not replayed); calls still queued wait for the next one.
   */
  loseSent(): void {
    for (const [id, pending] of this.#calls) {
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

  /** The client stopped: every call rejects with `closed`, saying why. */
  rejectAll(cause: Error): void {
    for (const [id, pending] of this.#calls) {
      this.#settle(id);
      pending.reject(
        new AgentCallError(
          "closed",
          pending.method,
          `${pending.method} not answered: ${cause.message}`,
        ),
      );
    }
  }

  #settle(id: string): void {
    const pending = this.#calls.get(id);
    if (pending === undefined) return;
    clearTimeout(pending.timer);
    this.#calls.delete(id);
  }
}

import { AgentConnectionError, type ConnectionErrorCode } from "./errors.js";
import type { HandshakeFailure } from "./handshake-failure.js";
import type { QueryReason } from "./query.js";
import { backoffDelay, classifyClose, type ResolvedReconnectOptions } from "./reconnect.js";
import type { CloseInfo, ConnectionStatus } from "./status.js";

/** What comes after a close or a failed `query`: another attempt, or the end. */
export type Verdict =
  | { readonly retry: true; readonly status: Extract<ConnectionStatus, { state: "connecting" }> }
  | { readonly retry: false; readonly code: ConnectionErrorCode; readonly message: string };

/** A socket that closed, as `Attempts.afterClose` weighs it. */
export interface SocketClose {
  /** Code and reason as partysocket reported them. */
  readonly code: number;
  readonly reason: string;
  /** Code and reason as the app is told them (1006 for a failed handshake). */
  readonly close: CloseInfo;
  /** What the handshake's `error` event said, when the handshake failed. */
  readonly failure: HandshakeFailure | undefined;
  /** Milliseconds the server had accepted the connection for; `undefined` if it never did. */
  readonly openFor: number | undefined;
}

/** Where the client was connecting, for the messages of a final failure. */
export interface Target {
  readonly agent: string;
  readonly name: string;
  /** `host:port`, or "the server" when no URL was built yet. */
  readonly where: string;
}

/**
 * The reconnect loop's counters (attempts since the last healthy connection, refused
 * credentials, failed queries, refused connections) and the decisions made from them:
 * whether to try again, how long to wait first, and why `query` runs next.
 */
export class Attempts {
  readonly #retry: ResolvedReconnectOptions;
  /** Attempts since the last healthy connection. */
  #attempt = 0;
  /** 4001 closes since the last accepted connection. */
  #authFailures = 0;
  #queryFailures = 0;
  /** The server has accepted this client at least once (a later refusal is a restart). */
  #everAccepted = false;
  /** Refused connections in a row while never accepted. */
  #unreachable = 0;
  #nextDelay = 0;
  #nextReason: QueryReason = "connect";

  constructor(retry: ResolvedReconnectOptions) {
    this.#retry = retry;
  }

  /** Milliseconds to wait before the next attempt; asking again gives 0 until a new verdict. */
  takeDelay(): number {
    const delay = this.#nextDelay;
    this.#nextDelay = 0;
    return delay;
  }

  /** An attempt starts now; returns why its `query` runs. */
  begin(): QueryReason {
    this.#attempt++;
    return this.#nextReason;
  }

  /** The attempt's `query` returned. */
  querySucceeded(): void {
    this.#queryFailures = 0;
  }

  /** The attempt's `query` threw; like a refused token: a few tries, then tell the app. */
  queryFailed(message: string): Verdict {
    if (++this.#queryFailures > this.#retry.maxAuthRetries) {
      return { retry: false, code: "query_failed", message: `query failed: ${message}` };
    }
    this.#nextDelay = backoffDelay(this.#attempt, this.#retry);
    return {
      retry: true,
      status: { state: "connecting", attempt: this.#attempt + 1, delay: this.#nextDelay },
    };
  }

  /** The server accepted a connection. */
  accepted(): void {
    this.#authFailures = 0;
    this.#everAccepted = true;
    this.#unreachable = 0;
  }

  /** `reconnect()`: start counting afresh, at once, as a first connection. */
  reset(): void {
    this.#attempt = 0;
    this.#authFailures = 0;
    this.#queryFailures = 0;
    this.#unreachable = 0;
    this.#nextDelay = 0;
    this.#nextReason = "connect";
  }

  /** A socket closed while the client wants to stay connected: retry, or give up and why. */
  afterClose(socket: SocketClose, target: Target): Verdict {
    const { code, reason, close, failure } = socket;
    const { where } = target;
    if (socket.openFor !== undefined && socket.openFor >= this.#retry.minUptime) this.#attempt = 0;
    if (failure?.kind === "http" && failure.status === 404) {
      const path = `/agents/${target.agent}/${target.name}`;
      return stop("not_found", `no agent "${target.agent}" at ${where} (HTTP 404 for ${path})`);
    }
    let unreachable: AgentConnectionError | undefined;
    if (failure?.kind === "unreachable") {
      const message = `no server at ${where} (${failure.cause})`;
      if (!this.#everAccepted && ++this.#unreachable > this.#retry.maxUnreachableRetries) {
        return stop("unreachable", message);
      }
      unreachable = new AgentConnectionError("unreachable", message, close);
    }
    const action = classifyClose(code, reason);
    if (action.kind === "stop" && action.code === "not_found") {
      return stop(
        "not_found",
        `no agent "${target.agent}" at ${where}${reason ? `: ${reason}` : ""}`,
      );
    }
    if (action.kind === "stop") {
      return stop(action.code, `connection refused (${code}${reason ? `: ${reason}` : ""})`);
    }
    if (action.kind === "reauthenticate") {
      this.#authFailures++;
      if (this.#authFailures > this.#retry.maxAuthRetries) {
        return stop("unauthorized", `credentials refused ${this.#authFailures} times`);
      }
    }
    if (this.#attempt >= this.#retry.maxRetries) {
      const last = unreachable ? `; last: ${unreachable.message}` : "";
      return stop("retries_exhausted", `gave up after ${this.#attempt} attempts${last}`);
    }
    this.#nextReason = action.kind === "reauthenticate" ? "unauthorized" : "reconnect";
    this.#nextDelay =
      action.kind === "wait"
        ? Math.round((action.ms ?? this.#retry.maxDelay) * (1 + 0.1 * Math.random()))
        : backoffDelay(Math.max(1, this.#attempt), this.#retry);
    return {
      retry: true,
      status: {
        state: "connecting",
        attempt: this.#attempt + 1,
        lastClose: close,
        delay: this.#nextDelay,
        ...(unreachable && { error: unreachable }),
      },
    };
  }
}

function stop(code: ConnectionErrorCode, message: string): Verdict {
  return { retry: false, code, message };
}

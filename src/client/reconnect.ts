import { CloseCode } from "../protocol/close-codes.js";
import { parseRetryAfterMs } from "../protocol/retry-hint.js";

/** How the client retries. All delays in milliseconds. */
export interface ReconnectOptions {
  /** Delay before the first retry. Default 1000. */
  minDelay?: number;
  /** Cap on the delay between retries. Default 15000. */
  maxDelay?: number;
  /** Each consecutive failure multiplies the delay by this. Default 2. */
  factor?: number;
  /**
   * Fraction of each delay that is random (0–1). Default 0.5: a delay is between half and
   * all of its nominal value, so clients cut off together by a restart come back spread out.
   */
  jitter?: number;
  /** Consecutive failed attempts before giving up with `connectionError`. Default: never. */
  maxRetries?: number;
  /** 4001 closes in a row, each after fresh credentials, before giving up. Default 3. */
  maxAuthRetries?: number;
  /**
   * Refused connections (nothing listening) before giving up with `unreachable`, while the
   * client has never been accepted by the server. Default 3, about 7 s with the default
   * delays: a script pointed at the wrong port learns it quickly, and a server that is still
   * starting gets a few seconds. Once accepted, a refused connection means the server is
   * restarting, and the client retries it like any other drop.
   */
  maxUnreachableRetries?: number;
  /** A connection open this long counts as healthy and resets the backoff. Default 5000. */
  minUptime?: number;
}

/** `ReconnectOptions` with every default filled in. */
export type ResolvedReconnectOptions = Required<ReconnectOptions>;

/** Fill in the defaults of `ReconnectOptions`. */
export function resolveReconnectOptions(options: ReconnectOptions = {}): ResolvedReconnectOptions {
  return {
    minDelay: options.minDelay ?? 1000,
    maxDelay: options.maxDelay ?? 15_000,
    factor: options.factor ?? 2,
    jitter: Math.min(1, Math.max(0, options.jitter ?? 0.5)),
    maxRetries: options.maxRetries ?? Number.POSITIVE_INFINITY,
    maxAuthRetries: options.maxAuthRetries ?? 3,
    maxUnreachableRetries: options.maxUnreachableRetries ?? 3,
    minUptime: options.minUptime ?? 5000,
  };
}

/**
 * Delay before retry number `attempt` (1 for the first retry): exponential, capped, with
 * jitter. `random` is injectable for tests.
 */
export function backoffDelay(
  attempt: number,
  options: ResolvedReconnectOptions,
  random: () => number = Math.random,
): number {
  const nominal = Math.min(
    options.maxDelay,
    options.minDelay * options.factor ** Math.max(0, attempt - 1),
  );
  return Math.round(nominal * (1 - options.jitter * random()));
}

/** What to do after the socket closed. */
export type CloseAction =
  /** Fetch fresh credentials (re-run `query`), then reconnect. */
  | { kind: "reauthenticate" }
  /** Wait this long, as the server asked, then reconnect. */
  | { kind: "wait"; ms: number | undefined }
  /** Reconnect with backoff. */
  | { kind: "retry" }
  /** Give up: the server said no in a way retrying cannot change. */
  | { kind: "stop"; code: "forbidden" | "revoked" | "refused" | "not_found" };

/**
 * Map a close code to what the client does next (see DESIGN.md, "Close codes"). Unlike
 * Cloudflare's client, which gives up on every 4xxx, a 4001 means "get a new token".
 */
export function classifyClose(code: number, reason: string): CloseAction {
  switch (code) {
    case CloseCode.Unauthorized:
      return { kind: "reauthenticate" };
    case CloseCode.Forbidden:
      return { kind: "stop", code: "forbidden" };
    case CloseCode.Revoked:
      return { kind: "stop", code: "revoked" };
    case CloseCode.UnknownAgent:
      return { kind: "stop", code: "not_found" };
    case CloseCode.TooManyAttempts:
      return { kind: "wait", ms: retryAfterMs(reason) };
    default:
      // Other application codes are the agent's own refusals; retrying would only repeat them.
      return code >= 4000 && code <= 4999 ? { kind: "stop", code: "refused" } : { kind: "retry" };
  }
}

/** Milliseconds from a reason like "too many failed attempts; retry in 42s" (the server's format). */
export const retryAfterMs: (reason: string) => number | undefined = parseRetryAfterMs;

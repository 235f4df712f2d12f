/**
 * The "try again in N seconds" hint of a refusal. A browser can read nothing of a refused
 * WebSocket but its close code and reason, so the wait rides in the reason text; server and
 * client share this one format so that neither has to guess the other's wording.
 */

const HINT = /;? ?retry in (\d+(?:\.\d+)?)s\b/;

/**
 * `message` with the wait appended, in whole seconds rounded up (at least 1):
 * `formatRetryReason("too many failed attempts", 41_200)` is
 * `"too many failed attempts; retry in 42s"`. A message that already carries a hint is
 * returned as it is.
 */
export function formatRetryReason(message: string, retryAfterMs: number): string {
  if (HINT.test(message)) return message;
  return `${message}; retry in ${retryAfterSeconds(retryAfterMs)}s`;
}

/** A wait in whole seconds, rounded up, at least 1: the hint's number and `Retry-After`'s. */
export function retryAfterSeconds(retryAfterMs: number): number {
  return Number.isFinite(retryAfterMs) ? Math.max(1, Math.ceil(retryAfterMs / 1000)) : 1;
}

/** Milliseconds from a reason written by `formatRetryReason`, or undefined when it has no hint. */
export function parseRetryAfterMs(reason: string): number | undefined {
  const match = HINT.exec(reason);
  return match ? Math.ceil(Number(match[1]) * 1000) : undefined;
}

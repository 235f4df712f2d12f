/** A round trip to Postgres that took longer than the caller could wait. */
export class TimeoutError extends Error {}

/**
 * `promise`, or a `TimeoutError` after `ms`. The cluster's connections can hang without ever
 * failing (a silent partition), so whatever must answer in time is raced against a clock and
 * its client replaced on timeout.
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what} timed out after ${ms} ms`)), ms);
  });
  // The loser's rejection is expected and must not surface as unhandled.
  promise.catch(() => {});
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

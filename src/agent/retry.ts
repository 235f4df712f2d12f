/**
 * Retry options for `schedule()`, `scheduleEvery()`, `queue()` and `this.retry()`: the
 * official SDK's names and defaults.
 */
export interface RetryOptions {
  /** Attempts in all, the first included. Default: 3. */
  maxAttempts?: number;
  /** Base delay of the exponential backoff, in ms. Default: 100. */
  baseDelayMs?: number;
  /** Cap on one delay, in ms. Default: 3000. */
  maxDelayMs?: number;
}

/** `this.retry()` options: `RetryOptions` plus a predicate that may stop early. */
export interface RetryCallOptions extends RetryOptions {
  /** Return false to stop retrying this error. Default: retry every error. */
  shouldRetry?: (error: unknown, nextAttempt: number) => boolean;
}

/** The defaults every unset field falls back to (also the SDK's). */
export const RETRY_DEFAULTS: Readonly<Required<RetryOptions>> = {
  maxAttempts: 3,
  baseDelayMs: 100,
  maxDelayMs: 3000,
};

/**
 * Fill unset fields from `defaults` and validate the result, so a bad option fails where
 * the schedule or queue item is made rather than when it runs.
 */
export function resolveRetry(
  options: RetryOptions | undefined,
  defaults: Required<RetryOptions> = RETRY_DEFAULTS,
): Required<RetryOptions> {
  const resolved = {
    maxAttempts: options?.maxAttempts ?? defaults.maxAttempts,
    baseDelayMs: options?.baseDelayMs ?? defaults.baseDelayMs,
    maxDelayMs: options?.maxDelayMs ?? defaults.maxDelayMs,
  };
  if (!Number.isInteger(resolved.maxAttempts) || resolved.maxAttempts < 1) {
    throw new RangeError("retry.maxAttempts must be an integer >= 1");
  }
  if (!(Number.isFinite(resolved.baseDelayMs) && resolved.baseDelayMs > 0)) {
    throw new RangeError("retry.baseDelayMs must be > 0");
  }
  if (!(Number.isFinite(resolved.maxDelayMs) && resolved.maxDelayMs > 0)) {
    throw new RangeError("retry.maxDelayMs must be > 0");
  }
  if (resolved.baseDelayMs > resolved.maxDelayMs) {
    throw new RangeError("retry.baseDelayMs must be <= retry.maxDelayMs");
  }
  return resolved;
}

/**
 * Milliseconds to wait after failed attempt `attempt` (1-based): "full jitter", a random
 * delay below `min(2^attempt × base, max)`, so many failing callers do not retry in step.
 */
export function backoffDelay(attempt: number, options: Required<RetryOptions>): number {
  const ceiling = Math.min(2 ** attempt * options.baseDelayMs, options.maxDelayMs);
  return Math.floor(Math.random() * ceiling);
}

/**
 * Run `fn` until it resolves, at most `maxAttempts` times, waiting a jittered exponential
 * backoff between attempts. Rejects with the last error. `onRetry` hears each failure that
 * is followed by another attempt.
 */
export async function withRetries<T>(
  fn: (attempt: number) => Promise<T> | T,
  options: Required<RetryOptions> & Pick<RetryCallOptions, "shouldRetry">,
  onRetry?: (error: unknown, nextAttempt: number, delayMs: number) => void,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (error) {
      if (attempt >= options.maxAttempts) throw error;
      if (options.shouldRetry !== undefined && !options.shouldRetry(error, attempt + 1)) {
        throw error;
      }
      const delay = backoffDelay(attempt, options);
      onRetry?.(error, attempt + 1, delay);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

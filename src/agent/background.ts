import type { Logger } from "pino";
import { type RetryOptions, resolveRetry, withRetries } from "./retry.js";

/** What schedules and the queue need from the instance that owns them. */
export interface BackgroundHost {
  /** The user's agent object, whose methods the callbacks name. */
  readonly agent: object;
  readonly log: Logger;
  /** Retry defaults: the agent class's `static options.retry` over the SDK's. */
  readonly retryDefaults: Required<RetryOptions>;
  /** Run `work` counted as activity, so the instance is not evicted under it. */
  track<T>(work: () => Promise<T>): Promise<T>;
  /** Run agent code with the agent visible to `getCurrentAgent()`. */
  invoke(method: Function, args: unknown[]): Promise<unknown>;
  /** A callback failed for the last time: tell the agent's `onError` (already logged). */
  failed(error: unknown): void;
  /** The earliest time this instance must be awake may have changed. */
  changed(): void;
}

/**
 * A table of the instance's database, which is created on its first write: `read()` is
 * `undefined` while there is no database file, `write()` creates it.
 */
export interface LazyTable<T> {
  read(): T | undefined;
  write(): T;
}

/** Throws unless `callback` names a method of the agent. */
export function assertCallback(agent: object, callback: unknown, what: string): string {
  if (typeof callback !== "string") throw new TypeError(`${what}(): callback must be a string`);
  if (typeof (agent as Record<string, unknown>)[callback] !== "function") {
    throw new TypeError(`${what}(): this.${callback} is not a function`);
  }
  return callback;
}

/** Stored retry options, as JSON text or null. */
export function retryJson(retry: RetryOptions | undefined): string | null {
  return retry === undefined ? null : JSON.stringify(retry);
}

/**
 * Run `agent[callback](payload, item)` with the item's retry policy: each failure but the
 * last waits a jittered backoff and is logged at debug level; the last one is logged once,
 * at error level, with the item's identity, and passed to `onError`. Never throws: a
 * failure is never lost silently, and it never reaches a client.
 */
export async function runCallback(
  host: BackgroundHost,
  kind: "schedule" | "queue",
  item: { id: string; callback: string; retry: string | null },
  args: unknown[],
  stillWanted: () => boolean,
): Promise<void> {
  let attempts = 0;
  try {
    const retry = resolveRetry(
      item.retry === null ? undefined : (JSON.parse(item.retry) as RetryOptions),
      host.retryDefaults,
    );
    await withRetries(
      async () => {
        attempts++;
        const method = (host.agent as Record<string, unknown>)[item.callback];
        if (typeof method !== "function") {
          throw new TypeError(`this.${item.callback} is not a function`);
        }
        await host.invoke(method, args);
      },
      // A cancelled or destroyed item is not tried again.
      { ...retry, shouldRetry: () => stillWanted() },
      (error, nextAttempt, delayMs) =>
        host.log.debug(
          {
            event: `${kind}_retry`,
            id: item.id,
            callback: item.callback,
            nextAttempt,
            delayMs,
            error: errorMessage(error),
          },
          `${kind} callback failed; retrying`,
        ),
    );
  } catch (error) {
    host.log.error(
      { event: `${kind}_failed`, id: item.id, callback: item.callback, attempts, err: error },
      `${kind} callback failed after ${attempts} attempt${attempts === 1 ? "" : "s"}`,
    );
    host.failed(error);
  }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

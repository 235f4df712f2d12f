import type { QueryParams } from "../client/index.js";
import { readTokenTimes } from "../client/jwt.js";

/** A promise React's `use()` can read synchronously once it has settled. */
type TrackedPromise = Promise<QueryParams> & {
  status?: "pending" | "fulfilled" | "rejected";
  value?: QueryParams;
};

interface Entry {
  promise: TrackedPromise;
  /** When the query resolved; unset while it runs. */
  settledAt?: number;
}

/**
 * Query results shared by every `useAgent` with the same agent, instance and `queryDeps`,
 * so components mounted together fetch one token, not one each. Module-level on purpose:
 * a suspended component has no state of its own to keep a promise in.
 */
const entries = new Map<string, Entry>();

/** Settled results stay usable this long whatever `cacheTtl` says, so the render after a query resolves reuses it instead of suspending again. */
const MIN_TTL_MS = 1000;

function fresh(entry: Entry, ttl: number, now: number): boolean {
  return entry.settledAt === undefined || now - entry.settledAt < Math.max(ttl, MIN_TTL_MS);
}

/** Run `query` and keep its promise under `key`; a failure is not kept, so it can be retried. */
function store(key: string, query: () => QueryParams | Promise<QueryParams>): TrackedPromise {
  let promise: TrackedPromise;
  try {
    // Called at once, like Cloudflare's hook does: the query starts during the render.
    promise = Promise.resolve(query());
  } catch (error) {
    promise = Promise.reject(error);
  }
  promise.status = "pending";
  const entry: Entry = { promise };
  entries.set(key, entry);
  // React's `use()` reads `status`/`value` to skip suspending on a promise that settled.
  promise.then(
    (value) => {
      promise.status = "fulfilled";
      promise.value = value;
      entry.settledAt = Date.now();
    },
    () => {
      promise.status = "rejected";
      if (entries.get(key) === entry) entries.delete(key);
    },
  );
  return promise;
}

/** The cached query promise for `key`, or a new one when there is none younger than `ttl`. */
export function cachedQuery(
  key: string,
  ttl: number,
  query: () => QueryParams | Promise<QueryParams>,
): Promise<QueryParams> {
  const now = Date.now();
  for (const [other, entry] of entries) {
    if (!fresh(entry, ttl, now)) entries.delete(other);
  }
  return entries.get(key)?.promise ?? store(key, query);
}

/**
 * Like `cachedQuery`, but a cached token that has expired, or has less than a fifth of its
 * life left, is not handed out for a new connection.
 */
export function queryForConnection(
  key: string,
  ttl: number,
  query: () => QueryParams | Promise<QueryParams>,
): Promise<QueryParams> {
  const entry = entries.get(key);
  const token = entry?.promise.value?.token;
  if (entry !== undefined && typeof token === "string") {
    const times = readTokenTimes(token);
    if (times !== undefined) {
      const life = times.expiresAt - (times.issuedAt ?? times.expiresAt);
      if (Date.now() >= times.expiresAt - life * 0.2) entries.delete(key);
    }
  }
  return cachedQuery(key, ttl, query);
}

/** Run the query again for `key` and share the new result (after a 4001 or for a refresh). */
export function refetchQuery(
  key: string,
  query: () => QueryParams | Promise<QueryParams>,
): Promise<QueryParams> {
  return store(key, query);
}

/** Forget the result for `key` (or every result). */
export function dropCachedQuery(key?: string): void {
  if (key === undefined) entries.clear();
  else entries.delete(key);
}

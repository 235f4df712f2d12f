import { AuthError } from "./errors.js";

/**
 * Where spent single-use ticket ids are remembered. In one process the in-memory store is
 * enough; several nodes need a shared one (e.g. Redis `SET jti 1 NX EXAT exp`).
 */
export interface ReplayStore {
  /**
   * Mark `jti` as used until `expiresAt` (seconds since the epoch, the token's `exp`).
   * Returns true the first time, false for every later call while the entry lives. A store
   * that cannot take the id must throw (e.g. `AuthError` `replay_store_full`), never return true.
   */
  spend(jti: string, expiresAt: number): boolean | Promise<boolean>;
}

/** Options of `MemoryReplayStore`. */
export interface MemoryReplayStoreOptions {
  /**
   * Most ids kept at once (default 100,000). When that many unexpired ids are kept, new
   * tickets are refused (`replay_store_full`, with a retry hint) until the oldest expires:
   * forgetting a spent id would let its ticket be replayed.
   */
  maxEntries?: number;
}

/**
 * Spent ticket ids in memory, each forgotten once its token has expired (a replay after
 * that is refused as expired anyway). Memory is bounded by `maxEntries`: reaching it takes
 * that many valid tickets within one token lifetime, which only the key holder can mint.
 * A full store never fails open: it refuses new tickets rather than evict an unexpired id.
 */
export class MemoryReplayStore implements ReplayStore {
  /** jti → expiry in ms since the epoch. */
  readonly #spent = new Map<string, number>();
  readonly #maxEntries: number;
  #nextSweep = 0;

  constructor(options: MemoryReplayStoreOptions = {}) {
    this.#maxEntries = Math.max(1, options.maxEntries ?? 100_000);
  }

  /** Number of ids currently remembered. */
  get size(): number {
    return this.#spent.size;
  }

  /** Throws `AuthError` `replay_store_full` when full of unexpired ids. */
  spend(jti: string, expiresAt: number): boolean {
    const now = Date.now();
    const until = this.#spent.get(jti);
    if (until !== undefined && until > now) return false;
    this.#sweep(now, false);
    if (until === undefined && this.#spent.size >= this.#maxEntries) {
      // Full: a full pass is worth it now, and only then is refusing right.
      const soonest = this.#sweep(now, true);
      if (this.#spent.size >= this.#maxEntries) {
        throw new AuthError("replay_store_full", undefined, {
          retryAfterMs: Math.max(soonest - now, 1000),
        });
      }
    }
    this.#spent.set(jti, expiresAt * 1000);
    return true;
  }

  /**
   * Drop expired ids; a full pass at most once a second (unless `force`) keeps the hot path
   * O(1) amortised. Returns the earliest expiry of the ids kept.
   */
  #sweep(now: number, force: boolean): number {
    if (!force && now < this.#nextSweep) return Number.POSITIVE_INFINITY;
    this.#nextSweep = now + 1000;
    let soonest = Number.POSITIVE_INFINITY;
    for (const [jti, until] of this.#spent) {
      if (until <= now) this.#spent.delete(jti);
      else if (until < soonest) soonest = until;
    }
    return soonest;
  }
}

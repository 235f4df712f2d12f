/**
 * Where spent single-use ticket ids are remembered. In one process the in-memory store is
 * enough; several nodes need a shared one (e.g. Redis `SET jti 1 NX EXAT exp`).
 */
export interface ReplayStore {
  /**
   * Mark `jti` as used until `expiresAt` (seconds since the epoch, the token's `exp`).
   * Returns true the first time, false for every later call while the entry lives.
   */
  spend(jti: string, expiresAt: number): boolean | Promise<boolean>;
}

/** Options of `MemoryReplayStore`. */
export interface MemoryReplayStoreOptions {
  /** Most ids kept at once (default 100,000); past it, the oldest unexpired id is dropped. */
  maxEntries?: number;
}

/**
 * Spent ticket ids in memory, each forgotten once its token has expired (a replay after
 * that is refused as expired anyway). Memory is bounded by `maxEntries`: reaching it takes
 * that many valid tickets within one token lifetime, which only the key holder can mint.
 */
export class MemoryReplayStore implements ReplayStore {
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

  spend(jti: string, expiresAt: number): boolean {
    const now = Date.now();
    const until = this.#spent.get(jti);
    if (until !== undefined && until > now) return false;
    this.#sweep(now);
    if (this.#spent.size >= this.#maxEntries) {
      const oldest = this.#spent.keys().next().value;
      if (oldest !== undefined) this.#spent.delete(oldest);
    }
    // Re-insert so that Map order stays insertion order for the eviction above.
    this.#spent.delete(jti);
    this.#spent.set(jti, expiresAt * 1000);
    return true;
  }

  /** Drop expired ids; a full pass at most once a second keeps the hot path O(1) amortised. */
  #sweep(now: number): void {
    if (now < this.#nextSweep) return;
    this.#nextSweep = now + 1000;
    for (const [jti, until] of this.#spent) {
      if (until <= now) this.#spent.delete(jti);
    }
  }
}

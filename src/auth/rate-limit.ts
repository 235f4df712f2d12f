/** Limits on failed attempts per client address; see `FailureLimiter`. */
export interface RateLimitOptions {
  /** Failures allowed per address in one window (default 20). */
  failures?: number;
  /** Window length in milliseconds (default 60,000). */
  windowMs?: number;
  /** Most addresses tracked at once (default 10,000); past it, the oldest is forgotten. */
  maxAddresses?: number;
}

interface Window {
  startedAt: number;
  failures: number;
}

/**
 * Counts failed attempts per client address in fixed windows. Only failures count, so a
 * client that authenticates correctly is never slowed; once an address is over the limit
 * it is refused, without any crypto, until its window ends. IPv6 addresses are grouped by
 * their /64, the block one subscriber usually gets.
 */
export class FailureLimiter {
  readonly #windows = new Map<string, Window>();
  readonly #failures: number;
  readonly #windowMs: number;
  readonly #maxAddresses: number;

  constructor(options: RateLimitOptions = {}) {
    this.#failures = Math.max(1, options.failures ?? 20);
    this.#windowMs = Math.max(1, options.windowMs ?? 60_000);
    this.#maxAddresses = Math.max(1, options.maxAddresses ?? 10_000);
  }

  /** Addresses currently tracked. */
  get size(): number {
    return this.#windows.size;
  }

  /** Milliseconds until `address` may try again, or 0 when it may try now. */
  retryAfter(address: string, now = Date.now()): number {
    const window = this.#windows.get(clientKey(address));
    if (window === undefined || window.failures < this.#failures) return 0;
    const left = window.startedAt + this.#windowMs - now;
    return Math.max(left, 0);
  }

  /** Count one failed attempt from `address`. */
  fail(address: string, now = Date.now()): void {
    const key = clientKey(address);
    let window = this.#windows.get(key);
    if (window === undefined || now - window.startedAt >= this.#windowMs) {
      this.#windows.delete(key);
      if (this.#windows.size >= this.#maxAddresses) this.#evict(now);
      window = { startedAt: now, failures: 0 };
      this.#windows.set(key, window);
    }
    window.failures++;
  }

  /** Make room: expired windows first, else the oldest one (Map order is insertion order). */
  #evict(now: number): void {
    for (const [key, window] of this.#windows) {
      if (now - window.startedAt >= this.#windowMs) this.#windows.delete(key);
      else break;
    }
    if (this.#windows.size >= this.#maxAddresses) {
      const oldest = this.#windows.keys().next().value;
      if (oldest !== undefined) this.#windows.delete(oldest);
    }
  }
}

/** The unit an address is limited as: an IPv4 address, or the /64 of an IPv6 one. */
export function clientKey(address: string): string {
  const bare = (address.split("%")[0] ?? "").toLowerCase();
  if (bare.startsWith("::ffff:") && bare.includes(".")) return bare.slice(7);
  if (!bare.includes(":")) return bare;
  const [head = "", tail] = bare.split("::");
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups =
    tail === undefined
      ? left
      : [
          ...left,
          ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill("0"),
          ...right,
        ];
  const prefix = groups.slice(0, 4).map((group) => group.replace(/^0+(?=.)/, ""));
  return `${prefix.join(":")}::/64`;
}

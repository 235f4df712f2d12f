/** Something the clock tells when its time has come. */
export interface Expiring {
  expire(): void;
}

/**
 * One coarse clock for every connection's credential expiry, instead of a `setTimeout`
 * each: a connection costs one Set entry (no timer, no closure), and one timer ticks while
 * any expiry is pending. A connection is closed at most one tick after its token expires;
 * every frame it sends meanwhile is refused at the exact expiry by `authorize`.
 */
export class ExpiryClock {
  readonly #tickMs: number;
  /** What is due, by tick (time / tickMs, rounded up). */
  readonly #due = new Map<number, Set<Expiring>>();
  #timer: NodeJS.Timeout | undefined;

  constructor(tickMs = 1000) {
    this.#tickMs = tickMs;
  }

  /** Tell `item` once `timeMs` has passed; returns the tick to `cancel` it with. */
  at(timeMs: number, item: Expiring): number {
    const tick = Math.ceil(timeMs / this.#tickMs);
    let bucket = this.#due.get(tick);
    if (bucket === undefined) {
      bucket = new Set();
      this.#due.set(tick, bucket);
    }
    bucket.add(item);
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.#tick(), this.#tickMs);
      this.#timer.unref();
    }
    return tick;
  }

  cancel(tick: number, item: Expiring): void {
    const bucket = this.#due.get(tick);
    if (bucket === undefined) return;
    bucket.delete(item);
    if (bucket.size === 0) this.#due.delete(tick);
  }

  #tick(): void {
    const now = Math.floor(Date.now() / this.#tickMs);
    for (const [tick, bucket] of this.#due) {
      if (tick > now) continue;
      this.#due.delete(tick);
      for (const item of bucket) item.expire();
    }
    if (this.#due.size === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }
}

/** The clock every connection of this process shares. */
export const expiryClock = new ExpiryClock();

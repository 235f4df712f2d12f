/**
 * One coarse clock for every connection's credential expiry, instead of a `setTimeout`
 * each: a connection costs one Set entry, and one timer ticks once a second while any
 * expiry is pending. A connection is closed at most a second after its token expires;
 * every frame it sends meanwhile is refused at the exact expiry by `authorize`.
 */
export class ExpiryClock {
  readonly #tickMs: number;
  /** Callbacks by the tick (time / tickMs, rounded up) at which they are due. */
  readonly #due = new Map<number, Set<() => void>>();
  #timer: NodeJS.Timeout | undefined;

  constructor(tickMs = 1000) {
    this.#tickMs = tickMs;
  }

  /** Run `onExpire` once `timeMs` has passed; returns a function that cancels it. */
  at(timeMs: number, onExpire: () => void): () => void {
    const tick = Math.ceil(timeMs / this.#tickMs);
    let bucket = this.#due.get(tick);
    if (bucket === undefined) {
      bucket = new Set();
      this.#due.set(tick, bucket);
    }
    bucket.add(onExpire);
    this.#start();
    const due = bucket;
    return () => {
      due.delete(onExpire);
      if (due.size === 0 && this.#due.get(tick) === due) this.#due.delete(tick);
    };
  }

  #start(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => this.#tick(), this.#tickMs);
    this.#timer.unref();
  }

  #tick(): void {
    const now = Math.floor(Date.now() / this.#tickMs);
    for (const [tick, bucket] of this.#due) {
      if (tick > now) continue;
      this.#due.delete(tick);
      for (const onExpire of bucket) onExpire();
    }
    if (this.#due.size === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }
}

/** The clock every connection of this process shares. */
export const expiryClock = new ExpiryClock();

import type { MemoryReplayStore } from "./replay.js";
import type { Revocations } from "./revocations.js";
import type { AuthStateStore, RevocationEntry } from "./state-store.js";

/**
 * The policy's link to an `AuthStateStore`: loads it into the in-memory checks, writes
 * changes through, takes pushed changes, and reloads and prunes periodically.
 */
export class DurableState {
  #store: AuthStateStore | undefined;
  #unsubscribe: (() => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #listeners = new Set<(entry: RevocationEntry) => void>();

  /**
   * @param revocations the policy's in-memory revocations
   * @param replay the policy's in-memory replay store, when it is the built-in one
   * @param reloadMs how often to prune and reload
   */
  constructor(
    readonly revocations: Revocations,
    readonly replay: MemoryReplayStore | undefined,
    readonly reloadMs: number,
  ) {}

  async use(store: AuthStateStore): Promise<void> {
    this.#stop();
    this.#store = store;
    await this.#load(store);
    this.#unsubscribe = store.subscribe?.((entry) => this.#take(entry));
    this.#timer = setInterval(() => {
      const now = Date.now();
      store
        .prune(now)
        .then(() => this.#load(store))
        // A closed store ends the reloads; the in-memory state keeps working.
        .catch(() => this.#store === store && this.#stop());
    }, this.reloadMs);
    this.#timer.unref();
  }

  /** Hear of revocations made elsewhere (pushed or reloaded), once each; returns a stop function. */
  onRevocation(listener: (entry: RevocationEntry) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async addRevocations(entries: RevocationEntry[]): Promise<void> {
    const store = this.#store;
    if (store === undefined) return;
    for (const entry of entries) await store.addRevocation(entry);
  }

  /** False when another node (or this one before a restart) already spent `jti`. */
  async spendTicket(jti: string, expiresAtMs: number): Promise<boolean> {
    const store = this.#store;
    return store === undefined ? true : store.spendTicket(jti, expiresAtMs);
  }

  async #load(store: AuthStateStore): Promise<void> {
    const { revocations, spentTickets } = await store.load();
    for (const entry of revocations) this.#take(entry);
    const now = Date.now();
    for (const ticket of spentTickets) {
      if (ticket.expiresAt <= now) continue;
      try {
        this.replay?.spend(ticket.jti, Math.ceil(ticket.expiresAt / 1000));
      } catch {
        // Memory is full: the durable store still refuses the replay.
      }
    }
  }

  /** A revocation from the store: into memory, and news to the listeners when it is new here. */
  #take(entry: RevocationEntry): void {
    if (!this.revocations.add(entry)) return;
    for (const listener of this.#listeners) listener(entry);
  }

  #stop(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

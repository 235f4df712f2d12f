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
    this.#unsubscribe = store.subscribe?.((entry) => this.revocations.add(entry));
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
    for (const entry of revocations) this.revocations.add(entry);
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

  #stop(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

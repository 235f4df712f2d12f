import type { TransactionSql } from "postgres";
import { ClusterError } from "./errors.js";
import type { Ownership } from "./ownership.js";

/** The channel wakers listen on; each payload names its schema, so clusters sharing a database stay apart. */
export const WAKEUP_CHANNEL = "outpost_wakeups";

/** A write that failed for want of Postgres is tried again this long later (ms). */
export const WAKEUP_RETRY_MS = 1_000;

/** What a wakeup notification carries. */
export interface WakeupNotice {
  schema: string;
  instance: string;
  /** The new due time (ms since the epoch); absent when the instance was released (see `Waker.released`). */
  due?: number;
}

/**
 * Write `instance`'s row of the wakeup index inside `tx`: its earliest due schedule or
 * queue item at `due` (ms since the epoch), or no row at all when nothing is due. Wakers
 * are told by NOTIFY, which Postgres delivers only once `tx` has committed.
 *
 * Call it only inside a fenced transaction (`Ownership.write`), so that a former owner
 * cannot move the row.
 */
export async function writeWakeup(
  tx: TransactionSql,
  schema: string,
  instance: string,
  due: number | undefined,
): Promise<void> {
  if (due === undefined) {
    await tx`DELETE FROM ${tx(schema)}.wakeups WHERE instance = ${instance}`;
    return;
  }
  const time = Math.max(0, Math.floor(due));
  await tx`
    INSERT INTO ${tx(schema)}.wakeups (instance, next_due_at) VALUES (${instance}, ${time})
    ON CONFLICT (instance) DO UPDATE SET next_due_at = excluded.next_due_at`;
  const notice: WakeupNotice = { schema, instance, due: time };
  await tx`SELECT pg_notify(${WAKEUP_CHANNEL}, ${JSON.stringify(notice)})`;
}

/**
 * The owner's side of the cluster-wide wakeup index: whenever an instance's earliest
 * schedule or queue item changes, `set()` writes it to Postgres, fenced by this node's epoch
 * for the instance, so a node that lost the instance (paused past its lease, partitioned)
 * can never move its row. Writes for one instance go one at a time, and a value already
 * written under the current epoch is not written again; of several `set()` calls made while
 * a write is on its way, only the newest value is sent. A write that failed because
 * Postgres could not be reached is tried again every `WAKEUP_RETRY_MS` for as long as this
 * node holds the instance: a row missing while its owner dies would leave the instance
 * asleep.
 *
 * @example
 * const wakeups = new WakeupWriter(ownership, "outpost");
 * // InstanceHost.onNextWakeup(instance, time):
 * wakeups.set(instance.key, time).catch((error) => log.debug({ err: error }, "wakeup not written"));
 */
export class WakeupWriter {
  readonly #ownership: Ownership;
  readonly #schema: string;
  /** instance → the newest value asked for. */
  readonly #wanted = new Map<string, number | undefined>();
  /** instance → what was last made durable, and under which epoch. */
  readonly #written = new Map<string, { epoch: number; due: number | undefined }>();
  /** instance → the tail of its chain of writes. */
  readonly #chains = new Map<string, Promise<void>>();
  readonly #retries = new Map<string, NodeJS.Timeout>();
  #closed = false;

  constructor(ownership: Ownership, schema: string) {
    this.#ownership = ownership;
    this.#schema = schema;
  }

  /**
   * Record that `instance` (`"<kebab-agent>/<name>"`) next needs to be awake at `due` (ms
   * since the epoch), or never (`undefined`: its row is removed). Resolves once that value
   * (or a newer one) is durable; rejects with the cluster's errors when this node does not
   * own the instance (`ERR_CLUSTER_NOT_OWNER`, `ERR_CLUSTER_NOT_SERVING`,
   * `ERR_CLUSTER_FENCED`): the row is then the next owner's to write.
   */
  set(instance: string, due: number | undefined): Promise<void> {
    this.#wanted.set(instance, due === undefined ? undefined : Math.max(0, Math.floor(due)));
    const previous = this.#chains.get(instance) ?? Promise.resolve();
    const next = previous.catch(() => {}).then(() => this.#write(instance));
    this.#chains.set(instance, next);
    const tail = next.finally(() => {
      if (this.#chains.get(instance) === next) this.#chains.delete(instance);
    });
    tail.catch((error: unknown) => this.#retryLater(instance, error));
    return next;
  }

  /** Stop retrying failed writes. */
  close(): void {
    this.#closed = true;
    for (const timer of this.#retries.values()) clearTimeout(timer);
    this.#retries.clear();
  }

  #retryLater(instance: string, error: unknown): void {
    // Fenced, not the owner, not serving: the row is the next owner's to write.
    if (error instanceof ClusterError || this.#closed || this.#retries.has(instance)) return;
    const timer = setTimeout(() => {
      this.#retries.delete(instance);
      if (!this.#wanted.has(instance) || this.#ownership.epochOf(instance) === undefined) return;
      this.set(instance, this.#wanted.get(instance)).catch(() => {});
    }, WAKEUP_RETRY_MS);
    timer.unref();
    this.#retries.set(instance, timer);
  }

  async #write(instance: string): Promise<void> {
    if (!this.#wanted.has(instance)) return;
    const due = this.#wanted.get(instance);
    const epoch = this.#ownership.epochOf(instance);
    const last = this.#written.get(instance);
    if (epoch !== undefined && last?.epoch === epoch && last.due === due) return;
    try {
      await this.#ownership.write(instance, (tx) => writeWakeup(tx, this.#schema, instance, due));
    } catch (error) {
      this.#written.delete(instance);
      throw error;
    }
    if (
      due === undefined &&
      this.#wanted.has(instance) &&
      this.#wanted.get(instance) === undefined
    ) {
      // Nothing due and no row: nothing to remember about this instance.
      this.#wanted.delete(instance);
      this.#written.delete(instance);
      return;
    }
    // `write` succeeded, so the epoch it checked is the one held now.
    this.#written.set(instance, { epoch: this.#ownership.epochOf(instance) ?? -1, due });
  }
}

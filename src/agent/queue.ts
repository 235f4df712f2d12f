import { randomUUID } from "node:crypto";
import type { QueueTable, StoredQueueItem } from "../storage/queue-table.js";
import {
  assertCallback,
  type BackgroundHost,
  type LazyTable,
  retryJson,
  runCallback,
} from "./background.js";
import { CLAIM_TOKEN, isStaleClaim } from "./claims.js";
import { type RetryOptions, resolveRetry } from "./retry.js";
import { BEFORE_RUN_RETRY_MS, type BeforeRun } from "./schedules.js";

/** One task waiting in an agent's queue, as the official SDK describes it. */
export interface QueueItem<Payload = unknown> {
  id: string;
  /** Name of the agent method that runs it. */
  callback: string;
  payload: Payload;
  /** When it was queued, in seconds since the epoch. */
  createdAt: number;
  /** The retry options given when it was queued. */
  retry?: RetryOptions;
}

/** Options of `queue()`. */
export interface QueueOptions {
  /** Retry policy of the callback; unset fields come from `static options.retry`. */
  retry?: RetryOptions;
  /** A stable id: queueing with an id already waiting replaces that item where it stands. */
  id?: string;
}

/** While another live process runs the head of the queue, look again this often (ms). */
const FOREIGN_CLAIM_POLL_MS = 1000;

/**
 * One instance's queue: items run in the order they were queued, one at a time, each with
 * its retry policy, and leave the table only when their callback has finished or failed
 * for the last time. The head is claimed before it runs, so a second process on the same
 * data directory waits its turn, and an item whose process died mid-run (its claim names
 * a process that is gone) runs again after the restart: at-least-once, as on Cloudflare,
 * so callbacks should be idempotent.
 */
export class TaskQueue {
  readonly #host: BackgroundHost;
  readonly #tables: LazyTable<QueueTable>;
  #started = false;
  #closed = false;
  #flushing = false;
  #poll: NodeJS.Timeout | undefined;
  /** The item this process is running, so close() can give its claim back. */
  #claimed: string | undefined;
  readonly #beforeRun: BeforeRun | undefined;

  /** `beforeRun` (default: none) is awaited before each callback; see `BeforeRun`. */
  constructor(host: BackgroundHost, tables: LazyTable<QueueTable>, beforeRun?: BeforeRun) {
    this.#host = host;
    this.#tables = tables;
    this.#beforeRun = beforeRun;
  }

  /** `onStart` finished: run what is waiting (also what a dead process left claimed). */
  start(): void {
    this.#started = true;
    this.#kick();
  }

  push(callback: string, payload: unknown, options: QueueOptions = {}): string {
    assertCallback(this.#host.agent, callback, "queue");
    if (options.retry !== undefined) resolveRetry(options.retry, this.#host.retryDefaults);
    if (options.id !== undefined && (typeof options.id !== "string" || options.id === "")) {
      throw new TypeError("queue(): `id` must be a non-empty string");
    }
    const id = options.id ?? randomUUID();
    this.#tables.write().push({
      id,
      callback,
      payload: JSON.stringify(payload ?? null),
      createdAt: Date.now(),
      retry: retryJson(options.retry),
    });
    this.#host.changed();
    this.#kick();
    return id;
  }

  dequeue(id: string): boolean {
    const removed = this.#tables.read()?.delete(id) ?? false;
    if (removed) this.#host.changed();
    return removed;
  }

  dequeueAll(): number {
    const removed = this.#tables.read()?.deleteAll() ?? 0;
    if (removed > 0) this.#host.changed();
    return removed;
  }

  dequeueAllByCallback(callback: string): number {
    const removed = this.#tables.read()?.deleteByCallback(callback) ?? 0;
    if (removed > 0) this.#host.changed();
    return removed;
  }

  get(id: string): QueueItem | undefined {
    const row = this.#tables.read()?.get(id);
    return row === undefined ? undefined : toQueueItem(row);
  }

  /** Every waiting item whose payload has `key` equal to `value`, in queue order. */
  find(key: string, value: unknown): QueueItem[] {
    return (this.#tables.read()?.all() ?? []).map(toQueueItem).filter((item) => {
      const payload = item.payload;
      return (
        typeof payload === "object" &&
        payload !== null &&
        (payload as Record<string, unknown>)[key] === value
      );
    });
  }

  /** When this instance must next be awake for its queue: now while items wait. */
  nextWakeup(): number | undefined {
    const head = this.#tables.read()?.head();
    if (head === undefined) return undefined;
    if (
      head.claimedBy !== null &&
      head.claimedBy !== CLAIM_TOKEN &&
      !isStaleClaim(head.claimedBy)
    ) {
      return Date.now() + FOREIGN_CLAIM_POLL_MS;
    }
    return head.createdAt;
  }

  #kick(): void {
    if (!this.#started || this.#closed || this.#flushing) return;
    this.#flushing = true;
    void this.#host
      .track(() => this.#flush())
      .finally(() => {
        this.#flushing = false;
        // An item pushed after the loop saw an empty queue, but before it ended, runs now.
        if (
          !this.#closed &&
          this.#poll === undefined &&
          this.#tables.read()?.head() !== undefined
        ) {
          this.#kick();
        }
      });
  }

  async #flush(): Promise<void> {
    while (!this.#closed) {
      const table = this.#tables.read();
      const head = table?.head();
      if (table === undefined || head === undefined) break;
      const expected = head.claimedBy;
      if (expected !== null && !isStaleClaim(expected)) {
        // Another live process runs it; its order must hold, so wait rather than skip.
        this.#poll ??= setTimeout(() => {
          this.#poll = undefined;
          this.#kick();
        }, FOREIGN_CLAIM_POLL_MS);
        this.#poll.unref();
        break;
      }
      if (!table.claim(head.id, head.version, CLAIM_TOKEN, expected)) continue;
      this.#claimed = head.id;
      if (!(await this.#runBefore(table, head))) break;
      const item = toQueueItem(head);
      await runCallback(
        this.#host,
        "queue",
        head,
        [item.payload, item],
        () => !this.#closed && table.get(head.id)?.version === head.version,
      );
      this.#claimed = undefined;
      if (this.#closed) return;
      table.complete(head.id, head.version);
      this.#host.changed();
    }
  }

  /**
   * Await `beforeRun`. When it rejects, give the claim back so the item stays at the head,
   * look again after `BEFORE_RUN_RETRY_MS`, and tell the caller not to run the callback.
   */
  async #runBefore(table: QueueTable, head: StoredQueueItem): Promise<boolean> {
    if (this.#beforeRun === undefined) return true;
    try {
      await this.#beforeRun();
      return true;
    } catch (error) {
      table.release(head.id, CLAIM_TOKEN);
      this.#claimed = undefined;
      this.#host.log.warn(
        { event: "queue_before_run_failed", id: head.id, callback: head.callback, err: error },
        `queue item not run: its claim could not be made durable; retrying in ${BEFORE_RUN_RETRY_MS} ms`,
      );
      this.#poll ??= setTimeout(() => {
        this.#poll = undefined;
        this.#kick();
      }, BEFORE_RUN_RETRY_MS);
      this.#poll.unref();
      return false;
    }
  }

  /** Stop; give back the claim of an item still running, so a later owner runs it. */
  close(): void {
    this.#closed = true;
    if (this.#poll !== undefined) clearTimeout(this.#poll);
    if (this.#claimed !== undefined) this.#tables.read()?.release(this.#claimed, CLAIM_TOKEN);
  }
}

function toQueueItem(row: StoredQueueItem): QueueItem {
  return {
    id: row.id,
    callback: row.callback,
    payload: JSON.parse(row.payload) as unknown,
    createdAt: Math.floor(row.createdAt / 1000),
    ...(row.retry !== null && { retry: JSON.parse(row.retry) as RetryOptions }),
  };
}

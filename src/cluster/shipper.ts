import { statSync } from "node:fs";
import type Database from "better-sqlite3";
import { WalCapture } from "./change-log.js";
import { FencedError, NotDurableError } from "./errors.js";
import { PageBatch } from "./page-batch.js";
import type { RestoredDatabase } from "./restore.js";
import type { ChangeStore } from "./wal-store.js";

/** Options of `ChangeShipper`; each default is in its doc. */
export interface ChangeShipperOptions {
  /** The instance's open database, in WAL mode, with nothing run on it since the open but its own setup. */
  db: Database.Database;
  /** Its file. */
  path: string;
  store: ChangeStore;
  /** `"<kebab-agent>/<name>"`, as in `owners`. */
  instance: string;
  /** The epoch this node claimed the instance with. */
  epoch: number;
  /** What `restoreDatabase()` returned for `path` before the database was opened. */
  restored: RestoredDatabase;
  /** WAL size past which a shipped WAL is checkpointed and restarted. Default 4 MiB. */
  checkpointBytes?: number;
  /**
   * Log size (page images since the last snapshot) past which a new snapshot is taken, or
   * the database's size when that is larger, so a restore reads at most about twice the
   * database. Default 8 MiB.
   */
  snapshotBytes?: number;
  /** How long a flush waits for PostgreSQL before it rejects with `timeout`. Default 10 s. */
  timeoutMs?: number;
  /** First delay before retrying a failed append; doubles up to 2 s. Default 100 ms. */
  retryMs?: number;
}

const DEFAULTS = {
  checkpointBytes: 4 * 1024 * 1024,
  snapshotBytes: 8 * 1024 * 1024,
  timeoutMs: 10_000,
  retryMs: 100,
};
const MAX_RETRY_MS = 2_000;

/** Where a shipper stands (for health checks and tests). */
export interface ShipperStatus {
  /** Every change committed so far is durable. */
  durable: boolean;
  /** Set once another node claimed the instance: nothing will ever ship again. */
  fenced: boolean;
  /** Sequence number of the last change PostgreSQL committed (0 before the first). */
  seq: number;
  /** Page-image bytes in the durable log since its last snapshot. */
  logBytes: number;
  /** The last append's failure, until an append succeeds. */
  lastError: unknown;
}

interface Waiter {
  ticket: number;
  resolve: () => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * Ships one instance's committed SQLite changes to its durable log in PostgreSQL. After a
 * turn, `await shipper.flush()` before any of the turn's output leaves the node: it
 * resolves once everything committed before the call is durable, fenced by the epoch, and
 * rejects with `FencedError` (another node owns the instance: stop serving it) or
 * `NotDurableError` (acknowledge nothing; the shipper keeps the changes and retries by
 * itself).
 *
 * Turns that flush while an append is in flight are shipped together in the next one, so
 * PostgreSQL sees one transaction per round trip, not one per turn.
 *
 * Flush and close the shipper before closing the database: SQLite checkpoints and removes
 * the WAL when its last connection closes.
 *
 * @example
 * const restored = await restoreDatabase(store, "room/lobby", path);
 * const db = new AgentDatabase(path, "process", { autoCheckpoint: false });
 * const shipper = new ChangeShipper({ db: db.connection, path, store, instance: "room/lobby", epoch, restored });
 * // after each turn:
 * await shipper.flush();
 */
export class ChangeShipper {
  readonly #db: Database.Database;
  readonly #store: ChangeStore;
  readonly #instance: string;
  readonly #epoch: number;
  readonly #options: typeof DEFAULTS;
  readonly #capture: WalCapture;
  /** Captured, not yet being appended. */
  #pending: PageBatch | undefined;
  #inFlight: Promise<void> | undefined;
  /** Counts captures; a flush waits until `#durable` reaches the count at its call. */
  #captured = 0;
  #durable = 0;
  #waiters: Waiter[] = [];
  #retryTimer: NodeJS.Timeout | undefined;
  #retryDelay: number;
  #fenced: FencedError | undefined;
  #closed = false;
  #seq: number;
  #logBytes: number;
  #dbBytes: number;
  #lastError: unknown;

  constructor(options: ChangeShipperOptions) {
    const { db, path, store, instance, restored } = options;
    this.#db = db;
    this.#store = store;
    this.#instance = instance;
    this.#epoch = options.epoch;
    this.#options = {
      checkpointBytes: options.checkpointBytes ?? DEFAULTS.checkpointBytes,
      snapshotBytes: options.snapshotBytes ?? DEFAULTS.snapshotBytes,
      timeoutMs: options.timeoutMs ?? DEFAULTS.timeoutMs,
      retryMs: options.retryMs ?? DEFAULTS.retryMs,
    };
    this.#retryDelay = this.#options.retryMs;
    this.#seq = restored.seq;
    this.#logBytes = restored.logBytes;
    this.#dbBytes = restored.fileBytes;
    if (db.pragma("journal_mode", { simple: true }) !== "wal") {
      throw new Error("change shipping needs the database in WAL mode");
    }
    // Only this shipper checkpoints, and only what it has captured (see WalCapture).
    db.pragma("wal_autocheckpoint = 0");
    // A read opens the WAL and its index, which the capture reads.
    db.pragma("schema_version");
    this.#capture = new WalCapture(path);
    if (!(restored.seq > 0 && fileUnchanged(path, restored) && this.#capture.resume())) {
      // Nothing durable to build on, or the file may hold changes the log lacks.
      this.#takeBase();
      this.#pump();
    }
  }

  /**
   * Resolves when every change committed before this call is durable in PostgreSQL.
   * Rejects with `FencedError` or `NotDurableError`; never acknowledges less.
   */
  flush(): Promise<void> {
    if (this.#fenced !== undefined) return Promise.reject(this.#fenced);
    if (this.#closed || !this.#db.open) return Promise.reject(new NotDurableError("closed"));
    try {
      this.#captureCommitted();
    } catch (error) {
      return Promise.reject(error);
    }
    const ticket = this.#captured;
    if (ticket === this.#durable) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        ticket,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters = this.#waiters.filter((other) => other !== waiter);
          reject(new NotDurableError("timeout", this.#lastError));
        }, this.#options.timeoutMs),
      };
      this.#waiters.push(waiter);
      this.#pump();
    });
  }

  /**
   * Ship a full image of the database now (a new base: the log before it is deleted), and
   * resolve once it is durable, as `flush()` does. Snapshots are also taken by themselves
   * when the log outgrows `snapshotBytes` and the database.
   */
  snapshot(): Promise<void> {
    if (this.#fenced !== undefined) return Promise.reject(this.#fenced);
    if (this.#closed || !this.#db.open) return Promise.reject(new NotDurableError("closed"));
    try {
      this.#takeBase();
    } catch (error) {
      return Promise.reject(error);
    }
    return this.flush();
  }

  /** Where this shipper stands. */
  get status(): ShipperStatus {
    return {
      durable: this.#captured === this.#durable,
      fenced: this.#fenced !== undefined,
      seq: this.#seq,
      logBytes: this.#logBytes,
      lastError: this.#lastError,
    };
  }

  /**
   * Stop shipping: let an append in flight finish (waiting at most `timeoutMs`), then
   * reject every flush still waiting with `NotDurableError("closed")`. Flush first to keep
   * what was committed.
   */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    if (this.#inFlight !== undefined) {
      let timer: NodeJS.Timeout | undefined;
      // A connection that went silent may never answer; closing must not wait for it.
      const gaveUp = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.#options.timeoutMs);
      });
      await Promise.race([this.#inFlight, gaveUp]);
      clearTimeout(timer);
    }
    this.#settle(Number.POSITIVE_INFINITY, new NotDurableError("closed"));
    this.#capture.close();
  }

  /** Move every change committed so far into `#pending`. */
  #captureCommitted(): void {
    const captured = this.#capture.read();
    if (captured.kind === "none") return;
    if (captured.kind === "lost") {
      this.#takeBase();
      return;
    }
    this.#dbBytes = captured.batch.dbPages * captured.batch.pageSize;
    this.#enqueue(captured.batch);
  }

  /** Queue a full image of the database, which covers every change committed so far. */
  #takeBase(): void {
    if (this.#db.inTransaction) {
      // The image would hold uncommitted rows.
      throw new Error("cannot take a snapshot while a transaction is open");
    }
    const image = this.#db.serialize();
    const pageSize = this.#db.pragma("page_size", { simple: true }) as number;
    this.#capture.rebase();
    this.#dbBytes = image.length;
    this.#enqueue(PageBatch.fromImage(image, pageSize));
  }

  #enqueue(batch: PageBatch): void {
    if (this.#pending === undefined) this.#pending = batch;
    else this.#pending.absorb(batch);
    this.#captured++;
  }

  /** Start the next append unless one is in flight or waiting to be retried. */
  #pump(): void {
    if (this.#inFlight !== undefined || this.#retryTimer !== undefined) return;
    if (this.#fenced !== undefined || this.#closed || this.#pending === undefined) return;
    const batch = this.#pending;
    const covers = this.#captured;
    this.#pending = undefined;
    // Appends never overlap: an older batch committing after a newer one would undo it.
    this.#inFlight = this.#store
      .append(this.#instance, this.#epoch, batch)
      .then(
        ({ seq }) => this.#shipped(batch, covers, seq),
        (error: unknown) => this.#failed(batch, covers, error),
      )
      .finally(() => {
        this.#inFlight = undefined;
        this.#pump();
      });
  }

  #shipped(batch: PageBatch, covers: number, seq: number): void {
    this.#seq = seq;
    this.#durable = covers;
    this.#lastError = undefined;
    this.#retryDelay = this.#options.retryMs;
    this.#logBytes = batch.base ? 0 : this.#logBytes + batch.bytes;
    this.#settle(covers);
    if (this.#closed || !this.#db.open || this.#db.inTransaction) return;
    try {
      if (this.#logBytes > Math.max(this.#options.snapshotBytes, this.#dbBytes)) {
        // Keep restore time bounded: a new base lets the log before it be deleted.
        this.#takeBase();
      }
      if (this.#capture.walBytes >= this.#options.checkpointBytes) {
        // Everything committed is now durable or held in #pending, so the WAL may restart.
        this.#captureCommitted();
        this.#db.pragma("wal_checkpoint(TRUNCATE)");
        this.#capture.rebase();
      }
    } catch (error) {
      // Upkeep only: without it the log or the WAL grows, and a position the capture lost
      // is answered with a snapshot at the next flush.
      this.#lastError = error;
    }
  }

  #failed(batch: PageBatch, covers: number, error: unknown): void {
    if (error instanceof FencedError) {
      this.#fenced = error;
      this.#pending = undefined;
      this.#settle(Number.POSITIVE_INFINITY, error);
      return;
    }
    // Keep the changes: the retry ships them with whatever was committed since.
    if (this.#pending !== undefined) batch.absorb(this.#pending);
    this.#pending = batch;
    this.#lastError = error;
    this.#settle(covers, new NotDurableError("unavailable", error));
    if (this.#closed) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#pump();
    }, this.#retryDelay);
    this.#retryTimer.unref();
    this.#retryDelay = Math.min(this.#retryDelay * 2, MAX_RETRY_MS);
  }

  /** Resolve (or reject with `error`) every waiter whose ticket is at most `upTo`. */
  #settle(upTo: number, error?: Error): void {
    const remaining: Waiter[] = [];
    for (const waiter of this.#waiters) {
      if (waiter.ticket > upTo) {
        remaining.push(waiter);
        continue;
      }
      clearTimeout(waiter.timer);
      if (error === undefined) waiter.resolve();
      else waiter.reject(error);
    }
    this.#waiters = remaining;
  }
}

/** Whether `path` is still the file `restoreDatabase()` wrote (no checkpoint touched it). */
function fileUnchanged(path: string, restored: RestoredDatabase): boolean {
  try {
    const now = statSync(path, { bigint: true });
    return Number(now.size) === restored.fileBytes && now.mtimeNs === restored.mtimeNs;
  } catch {
    return false;
  }
}

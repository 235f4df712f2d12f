import type Database from "better-sqlite3";

/** One persisted queue item. */
export interface StoredQueueItem {
  id: string;
  callback: string;
  /** JSON text of the payload. */
  payload: string;
  /** Epoch milliseconds. */
  createdAt: number;
  /** JSON text of the `RetryOptions` given, or null. */
  retry: string | null;
  /** Bumped when a push with the same id replaces the item. */
  version: number;
  /** The process running this item now (see claims.ts), or null. */
  claimedBy: string | null;
}

const COLUMNS =
  "id, callback, payload, created_at AS createdAt, retry, version, claimed_by AS claimedBy";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS _outpost_queue (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, callback TEXT NOT NULL,
  payload TEXT NOT NULL, created_at INTEGER NOT NULL, retry TEXT,
  version INTEGER NOT NULL DEFAULT 0, claimed_by TEXT
);
`;

/**
 * The queue of one agent instance, in push order. An item leaves the table only once its
 * callback has finished (or failed for the last time), so an item that was running when
 * the process died is still there after a restart.
 */
export class QueueTable {
  readonly #push: Database.Statement;
  readonly #head: Database.Statement<[], StoredQueueItem>;
  readonly #get: Database.Statement<[string], StoredQueueItem>;
  readonly #all: Database.Statement<[], StoredQueueItem>;
  readonly #claim: Database.Statement<[string, string, number, string | null]>;
  readonly #release: Database.Statement<[string, string]>;
  readonly #complete: Database.Statement<[string, number]>;
  readonly #delete: Database.Statement<[string]>;
  readonly #deleteAll: Database.Statement<[]>;
  readonly #deleteByCallback: Database.Statement<[string]>;
  readonly #count: Database.Statement<[], { count: number }>;

  constructor(db: Database.Database) {
    db.exec(SCHEMA);
    // A push with an existing id replaces the item where it stands in the queue.
    this.#push = db.prepare(
      `INSERT INTO _outpost_queue (id, callback, payload, created_at, retry) VALUES (@id, @callback, @payload, @createdAt, @retry)
       ON CONFLICT(id) DO UPDATE SET callback = excluded.callback, payload = excluded.payload,
         retry = excluded.retry, version = version + 1, claimed_by = NULL`,
    );
    this.#head = db.prepare(`SELECT ${COLUMNS} FROM _outpost_queue ORDER BY seq LIMIT 1`);
    this.#get = db.prepare(`SELECT ${COLUMNS} FROM _outpost_queue WHERE id = ?`);
    this.#all = db.prepare(`SELECT ${COLUMNS} FROM _outpost_queue ORDER BY seq`);
    this.#claim = db.prepare(
      "UPDATE _outpost_queue SET claimed_by = ? WHERE id = ? AND version = ? AND claimed_by IS ?",
    );
    this.#release = db.prepare(
      "UPDATE _outpost_queue SET claimed_by = NULL WHERE id = ? AND claimed_by = ?",
    );
    this.#complete = db.prepare("DELETE FROM _outpost_queue WHERE id = ? AND version = ?");
    this.#delete = db.prepare("DELETE FROM _outpost_queue WHERE id = ?");
    this.#deleteAll = db.prepare("DELETE FROM _outpost_queue");
    this.#deleteByCallback = db.prepare("DELETE FROM _outpost_queue WHERE callback = ?");
    this.#count = db.prepare("SELECT COUNT(*) AS count FROM _outpost_queue");
  }

  push(item: Pick<StoredQueueItem, "id" | "callback" | "payload" | "createdAt" | "retry">): void {
    this.#push.run(item);
  }

  /** The oldest item: the only one that may run. */
  head(): StoredQueueItem | undefined {
    return this.#head.get();
  }

  get(id: string): StoredQueueItem | undefined {
    return this.#get.get(id);
  }

  all(): StoredQueueItem[] {
    return this.#all.all();
  }

  get size(): number {
    return this.#count.get()!.count;
  }

  /** Take the item at `version` whose current claim is `expected` (null: unclaimed). */
  claim(id: string, version: number, claim: string, expected: string | null): boolean {
    return this.#claim.run(claim, id, version, expected).changes === 1;
  }

  release(id: string, claim: string): void {
    this.#release.run(id, claim);
  }

  /** The item at `version` ran: remove it (a replacement pushed meanwhile stays). */
  complete(id: string, version: number): void {
    this.#complete.run(id, version);
  }

  delete(id: string): boolean {
    return this.#delete.run(id).changes > 0;
  }

  deleteAll(): number {
    return this.#deleteAll.run().changes;
  }

  deleteByCallback(callback: string): number {
    return this.#deleteByCallback.run(callback).changes;
  }
}

import type Database from "better-sqlite3";

/** The four kinds of schedule, named as in the official SDK. */
export type ScheduleType = "scheduled" | "delayed" | "cron" | "interval";

/** One persisted schedule row. Times are epoch milliseconds. */
export interface StoredSchedule {
  id: string;
  callback: string;
  /** JSON text of the payload. */
  payload: string;
  /** When it runs next. */
  time: number;
  type: ScheduleType;
  cron: string | null;
  timezone: string | null;
  intervalSeconds: number | null;
  delaySeconds: number | null;
  /** JSON text of the `RetryOptions` given, or null. */
  retry: string | null;
  /** The process running this one-shot schedule now (see claims.ts), or null. */
  claimedBy: string | null;
}

const COLUMNS =
  "id, callback, payload, time, type, cron, timezone, interval_seconds AS intervalSeconds, delay_seconds AS delaySeconds, retry, claimed_by AS claimedBy";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS _outpost_schedules (
  id TEXT PRIMARY KEY, callback TEXT NOT NULL, payload TEXT NOT NULL, time INTEGER NOT NULL,
  type TEXT NOT NULL DEFAULT 'scheduled'
);
CREATE INDEX IF NOT EXISTS _outpost_schedules_time ON _outpost_schedules (time);
`;

/** Columns added after the first release; older databases get them on open. */
const ADDED_COLUMNS: Record<string, string> = {
  type: "TEXT NOT NULL DEFAULT 'scheduled'",
  cron: "TEXT",
  timezone: "TEXT",
  interval_seconds: "REAL",
  delay_seconds: "REAL",
  retry: "TEXT",
  claimed_by: "TEXT",
};

/**
 * The schedules of one agent instance. Every change is its own statement, so it is
 * committed (and seen by any other process on the same file) when the call returns.
 */
export class ScheduleTable {
  readonly #insert: Database.Statement;
  readonly #get: Database.Statement<[string], StoredSchedule>;
  readonly #all: Database.Statement<[], StoredSchedule>;
  readonly #delete: Database.Statement<[string]>;
  readonly #deleteAll: Database.Statement<[]>;
  readonly #advance: Database.Statement<[number, string, number]>;
  readonly #setTime: Database.Statement<[number, string]>;
  readonly #claim: Database.Statement<[string, string, string | null]>;
  readonly #release: Database.Statement<[string, string]>;
  readonly #duplicate: Database.Statement<
    [ScheduleType, string, string, string | null, string | null, number | null],
    StoredSchedule
  >;

  constructor(db: Database.Database) {
    db.exec(SCHEMA);
    const present = new Set(
      (db.pragma("table_info(_outpost_schedules)") as { name: string }[]).map((c) => c.name),
    );
    for (const [name, definition] of Object.entries(ADDED_COLUMNS)) {
      if (!present.has(name))
        db.exec(`ALTER TABLE _outpost_schedules ADD COLUMN ${name} ${definition}`);
    }
    this.#insert = db.prepare(
      `INSERT INTO _outpost_schedules (id, callback, payload, time, type, cron, timezone, interval_seconds, delay_seconds, retry)
       VALUES (@id, @callback, @payload, @time, @type, @cron, @timezone, @intervalSeconds, @delaySeconds, @retry)`,
    );
    this.#get = db.prepare(`SELECT ${COLUMNS} FROM _outpost_schedules WHERE id = ?`);
    this.#all = db.prepare(`SELECT ${COLUMNS} FROM _outpost_schedules ORDER BY time, rowid`);
    this.#delete = db.prepare("DELETE FROM _outpost_schedules WHERE id = ?");
    this.#deleteAll = db.prepare("DELETE FROM _outpost_schedules");
    this.#advance = db.prepare("UPDATE _outpost_schedules SET time = ? WHERE id = ? AND time = ?");
    this.#setTime = db.prepare("UPDATE _outpost_schedules SET time = ? WHERE id = ?");
    this.#claim = db.prepare(
      "UPDATE _outpost_schedules SET claimed_by = ? WHERE id = ? AND claimed_by IS ?",
    );
    this.#release = db.prepare(
      "UPDATE _outpost_schedules SET claimed_by = NULL WHERE id = ? AND claimed_by = ?",
    );
    // `IS` so that NULL cron/timezone/interval compare equal to NULL.
    this.#duplicate = db.prepare(
      `SELECT ${COLUMNS} FROM _outpost_schedules
       WHERE type = ? AND callback = ? AND payload = ? AND cron IS ? AND timezone IS ? AND interval_seconds IS ?
       ORDER BY rowid LIMIT 1`,
    );
  }

  insert(row: Omit<StoredSchedule, "claimedBy">): void {
    this.#insert.run(row);
  }

  /** An existing schedule with the same kind, callback, payload and timing, if any. */
  findSame(row: Omit<StoredSchedule, "claimedBy" | "id" | "time" | "retry" | "delaySeconds">) {
    return this.#duplicate.get(
      row.type,
      row.callback,
      row.payload,
      row.cron,
      row.timezone,
      row.intervalSeconds,
    );
  }

  get(id: string): StoredSchedule | undefined {
    return this.#get.get(id);
  }

  /** Every schedule, the earliest first. */
  all(): StoredSchedule[] {
    return this.#all.all();
  }

  delete(id: string): boolean {
    return this.#delete.run(id).changes > 0;
  }

  deleteAll(): number {
    return this.#deleteAll.run().changes;
  }

  /**
   * Move a recurring schedule from `due` to `next`, only if it is still at `due`: of two
   * processes racing for one due time exactly one sees true.
   */
  advance(id: string, due: number, next: number): boolean {
    return this.#advance.run(next, id, due).changes === 1;
  }

  setTime(id: string, time: number): void {
    this.#setTime.run(time, id);
  }

  /** Take a one-shot schedule whose current claim is `expected` (null: unclaimed). */
  claim(id: string, claim: string, expected: string | null): boolean {
    return this.#claim.run(claim, id, expected).changes === 1;
  }

  /** Give a claim back (the run was abandoned, e.g. on shutdown). */
  release(id: string, claim: string): void {
    this.#release.run(id, claim);
  }
}

import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";

/** A value that can be bound to a SQL parameter. */
export type SqlValue = string | number | bigint | boolean | null | undefined | Uint8Array;

/** One persisted schedule row. */
export interface StoredSchedule {
  id: string;
  callback: string;
  payload: unknown;
  /** Milliseconds since the epoch. */
  time: number;
  /** `delayed`: made with a number of seconds; `scheduled`: made with a date. */
  type: "scheduled" | "delayed";
}

/** How hard a write is pushed to disk before `setState` returns. */
export type Durability = "process" | "full";

/** Options of `AgentDatabase` beyond durability. */
export interface AgentDatabaseOptions {
  /**
   * Let SQLite checkpoint the WAL by itself (default true). Cluster mode turns it off: its
   * change shipper reads committed frames from the WAL and checkpoints only after shipping.
   */
  autoCheckpoint?: boolean;
}

interface ScheduleRow {
  id: string;
  callback: string;
  payload: string;
  time: number;
  type: "scheduled" | "delayed";
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS _outpost_kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS _outpost_schedules (
  id TEXT PRIMARY KEY, callback TEXT NOT NULL, payload TEXT NOT NULL, time INTEGER NOT NULL,
  type TEXT NOT NULL DEFAULT 'scheduled'
);
CREATE INDEX IF NOT EXISTS _outpost_schedules_time ON _outpost_schedules (time);
`;

/**
 * The SQLite database of one agent instance: its state, its schedules and the user's own
 * tables. Every write is committed before the call returns. In WAL mode with
 * `synchronous = NORMAL` ("process" durability) a commit survives the process being
 * killed; "full" adds an fsync per commit so it also survives the machine losing power.
 */
export class AgentDatabase {
  readonly #db: Database.Database;
  readonly #statements = new Map<string, Database.Statement>();
  readonly #getKv: Database.Statement<[string], { value: string }>;
  readonly #putKv: Database.Statement<[string, string]>;

  constructor(path: string, durability: Durability = "process", options?: AgentDatabaseOptions) {
    mkdirSync(dirname(path), { recursive: true });
    this.#db = new Database(path);
    this.#db.pragma("journal_mode = WAL");
    if (options?.autoCheckpoint === false) this.#db.pragma("wal_autocheckpoint = 0");
    this.#db.pragma(`synchronous = ${durability === "full" ? "FULL" : "NORMAL"}`);
    this.#db.pragma("busy_timeout = 5000");
    this.#db.exec(SCHEMA);
    // Databases made before schedules recorded their type.
    const columns = this.#db.pragma("table_info(_outpost_schedules)") as { name: string }[];
    if (!columns.some((column) => column.name === "type")) {
      this.#db.exec(
        "ALTER TABLE _outpost_schedules ADD COLUMN type TEXT NOT NULL DEFAULT 'scheduled'",
      );
    }
    this.#getKv = this.#db.prepare("SELECT value FROM _outpost_kv WHERE key = ?");
    this.#putKv = this.#db.prepare(
      "INSERT INTO _outpost_kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    );
  }

  get open(): boolean {
    return this.#db.open;
  }

  /** The underlying connection, for the cluster's change shipper (which reads its WAL). */
  get connection(): Database.Database {
    return this.#db;
  }

  /** The stored JSON value for `key`, or `undefined` when none was written. */
  readJson(key: string): unknown {
    const row = this.#getKv.get(key);
    return row === undefined ? undefined : JSON.parse(row.value);
  }

  /** Store `json` (already serialized) under `key`; committed when this returns. */
  writeJson(key: string, json: string): void {
    this.#putKv.run(key, json);
  }

  /**
   * Run a tagged-template query with every interpolated value bound as a parameter.
   * Statements that return rows give them back; others return an empty array.
   */
  sql<Row>(strings: TemplateStringsArray, values: readonly SqlValue[]): Row[] {
    const text = strings.join("?");
    let statement = this.#statements.get(text);
    if (statement === undefined) {
      statement = this.#db.prepare(text);
      this.#statements.set(text, statement);
    }
    const params = values.map(toSqlParameter);
    if (statement.reader) return statement.all(...params) as Row[];
    statement.run(...params);
    return [];
  }

  insertSchedule(schedule: StoredSchedule): void {
    this.#db
      .prepare(
        "INSERT INTO _outpost_schedules (id, callback, payload, time, type) VALUES (?, ?, ?, ?, ?)",
      )
      .run(
        schedule.id,
        schedule.callback,
        JSON.stringify(schedule.payload ?? null),
        schedule.time,
        schedule.type,
      );
  }

  deleteSchedule(id: string): boolean {
    return this.#db.prepare("DELETE FROM _outpost_schedules WHERE id = ?").run(id).changes > 0;
  }

  listSchedules(): StoredSchedule[] {
    const rows = this.#db
      .prepare("SELECT id, callback, payload, time, type FROM _outpost_schedules ORDER BY time, id")
      .all() as ScheduleRow[];
    return rows.map((row) => ({ ...row, payload: JSON.parse(row.payload) }));
  }

  getSchedule(id: string): StoredSchedule | undefined {
    const row = this.#db
      .prepare("SELECT id, callback, payload, time, type FROM _outpost_schedules WHERE id = ?")
      .get(id) as ScheduleRow | undefined;
    return row === undefined ? undefined : { ...row, payload: JSON.parse(row.payload) };
  }

  /** Earliest schedule time, or `undefined` when nothing is scheduled. */
  nextScheduleTime(): number | undefined {
    const row = this.#db.prepare("SELECT MIN(time) AS time FROM _outpost_schedules").get() as {
      time: number | null;
    };
    return row.time ?? undefined;
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}

function toSqlParameter(value: SqlValue): string | number | bigint | null | Uint8Array {
  if (value === undefined) return null;
  if (typeof value === "boolean") return value ? 1 : 0;
  if (
    value === null ||
    typeof value === "string" ||
    typeof value === "number" ||
    typeof value === "bigint" ||
    value instanceof Uint8Array
  ) {
    return value;
  }
  throw new TypeError(`cannot bind a ${typeof value} to a SQL parameter; serialize it first`);
}

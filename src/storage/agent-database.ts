import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { QueueTable } from "./queue-table.js";
import { ScheduleTable } from "./schedule-table.js";

/** A value that can be bound to a SQL parameter. */
export type SqlValue = string | number | bigint | boolean | null | undefined | Uint8Array;

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

const SCHEMA = "CREATE TABLE IF NOT EXISTS _outpost_kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)";

/**
 * The SQLite database of one agent instance: its state, its schedules, its queue and the
 * user's own tables. Every write is committed before the call returns. In WAL mode with
 * `synchronous = NORMAL` ("process" durability) a commit survives the process being
 * killed; "full" adds an fsync per commit so it also survives the machine losing power.
 */
export class AgentDatabase {
  readonly #db: Database.Database;
  readonly #statements = new Map<string, Database.Statement>();
  readonly #getKv: Database.Statement<[string], { value: string }>;
  readonly #putKv: Database.Statement<[string, string]>;
  /** This instance's schedules. */
  readonly schedules: ScheduleTable;
  /** This instance's queue. */
  readonly queue: QueueTable;

  constructor(path: string, durability: Durability = "process", options?: AgentDatabaseOptions) {
    mkdirSync(dirname(path), { recursive: true });
    this.#db = new Database(path);
    this.#db.pragma("journal_mode = WAL");
    if (options?.autoCheckpoint === false) this.#db.pragma("wal_autocheckpoint = 0");
    this.#db.pragma(`synchronous = ${durability === "full" ? "FULL" : "NORMAL"}`);
    this.#db.pragma("busy_timeout = 5000");
    this.#db.exec(SCHEMA);
    this.schedules = new ScheduleTable(this.#db);
    this.queue = new QueueTable(this.#db);
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

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";

/** An agent instance that must be woken at `time` to run its schedules. */
export interface Wakeup {
  agent: string;
  name: string;
  time: number;
}

/**
 * The server-wide index of when each instance next has a schedule due, so an evicted
 * instance (or one from before a restart) is woken without opening every database.
 * The instance's own database is the source of truth; this index is rewritten from it
 * whenever the instance changes its schedules or starts.
 */
export class WakeupIndex {
  readonly #db: Database.Database;
  readonly #upsert: Database.Statement<[string, string, number]>;
  readonly #delete: Database.Statement<[string, string]>;
  readonly #due: Database.Statement<[number], Wakeup>;
  readonly #earliest: Database.Statement<[], { time: number | null }>;

  constructor(dataDir: string) {
    const dir = join(dataDir, "_outpost");
    mkdirSync(dir, { recursive: true });
    this.#db = new Database(join(dir, "wakeups.sqlite"));
    this.#db.pragma("journal_mode = WAL");
    this.#db.pragma("synchronous = NORMAL");
    // Two processes on one data directory both write here; wait for the other's commit.
    this.#db.pragma("busy_timeout = 5000");
    this.#db.exec(
      "CREATE TABLE IF NOT EXISTS wakeups (agent TEXT NOT NULL, name TEXT NOT NULL, time INTEGER NOT NULL, PRIMARY KEY (agent, name))",
    );
    this.#upsert = this.#db.prepare(
      "INSERT INTO wakeups (agent, name, time) VALUES (?, ?, ?) ON CONFLICT(agent, name) DO UPDATE SET time = excluded.time",
    );
    this.#delete = this.#db.prepare("DELETE FROM wakeups WHERE agent = ? AND name = ?");
    this.#due = this.#db.prepare("SELECT agent, name, time FROM wakeups WHERE time <= ?");
    this.#earliest = this.#db.prepare("SELECT MIN(time) AS time FROM wakeups");
  }

  set(agent: string, name: string, time: number | undefined): void {
    if (time === undefined) this.#delete.run(agent, name);
    else this.#upsert.run(agent, name, time);
  }

  due(now: number): Wakeup[] {
    return this.#due.all(now);
  }

  earliest(): number | undefined {
    return this.#earliest.get()?.time ?? undefined;
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}

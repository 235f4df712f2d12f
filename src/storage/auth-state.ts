import { mkdirSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import type { AuthStateStore, RevocationEntry } from "../auth/state-store.js";
import type { Durability } from "./agent-database.js";

/** File name of the auth state in the data directory; agents live in directories beside it. */
export const AUTH_STATE_FILE = "_auth.sqlite";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS revocations (
  kind TEXT NOT NULL, value TEXT NOT NULL, revoked_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  PRIMARY KEY (kind, value)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS revocations_expires_at ON revocations (expires_at);
CREATE TABLE IF NOT EXISTS spent_tickets (
  jti TEXT PRIMARY KEY, expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS spent_tickets_expires_at ON spent_tickets (expires_at);
`;

interface RevocationRow {
  kind: "sub" | "jti";
  value: string;
  revoked_at: number;
  expires_at: number;
}

/**
 * Revocations and spent ticket ids in one SQLite file in the data directory, so a restart
 * (or `kill -9`) forgets nothing. WAL, with the `synchronous` setting agent data has for the
 * same `Durability`: "process" survives the process dying, "full" also power loss. Every
 * write is committed before its promise resolves (better-sqlite3 is synchronous).
 *
 * @example
 * const store = openAuthStateStore(".outpost", "process");
 * await policy.useStateStore?.(store);
 */
export class SqliteAuthStateStore implements AuthStateStore {
  readonly #db: Database.Database;
  readonly #selectRevocations: Database.Statement<[number], RevocationRow>;
  readonly #selectTickets: Database.Statement<[number], { jti: string; expires_at: number }>;
  readonly #upsertRevocation: Database.Statement<[string, string, number, number]>;
  readonly #spend: Database.Statement<[{ jti: string; expiresAt: number; now: number }]>;
  readonly #pruneRevocations: Database.Statement<[number]>;
  readonly #pruneTickets: Database.Statement<[number]>;

  constructor(path: string, durability: Durability = "process") {
    this.#db = new Database(path);
    this.#db.pragma("journal_mode = WAL");
    this.#db.pragma(`synchronous = ${durability === "full" ? "FULL" : "NORMAL"}`);
    this.#db.pragma("busy_timeout = 5000");
    this.#db.exec(SCHEMA);
    this.#selectRevocations = this.#db.prepare(
      "SELECT kind, value, revoked_at, expires_at FROM revocations WHERE expires_at > ?",
    );
    this.#selectTickets = this.#db.prepare(
      "SELECT jti, expires_at FROM spent_tickets WHERE expires_at > ?",
    );
    // A later revocation of the same subject refuses more tokens; never move one back.
    this.#upsertRevocation = this.#db.prepare(
      `INSERT INTO revocations (kind, value, revoked_at, expires_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (kind, value) DO UPDATE SET
         revoked_at = max(revoked_at, excluded.revoked_at),
         expires_at = max(expires_at, excluded.expires_at)`,
    );
    // One statement, so spending is atomic: a row is written only when the id is new or its
    // previous spend has expired; `changes` tells which.
    this.#spend = this.#db.prepare(
      `INSERT INTO spent_tickets (jti, expires_at) VALUES (@jti, @expiresAt)
       ON CONFLICT (jti) DO UPDATE SET expires_at = excluded.expires_at
       WHERE spent_tickets.expires_at <= @now`,
    );
    this.#pruneRevocations = this.#db.prepare("DELETE FROM revocations WHERE expires_at <= ?");
    this.#pruneTickets = this.#db.prepare("DELETE FROM spent_tickets WHERE expires_at <= ?");
    this.#pruneNow(Date.now());
  }

  async load(): Promise<{
    revocations: RevocationEntry[];
    spentTickets: { jti: string; expiresAt: number }[];
  }> {
    const now = Date.now();
    return {
      revocations: this.#selectRevocations.all(now).map((row) => ({
        kind: row.kind,
        value: row.value,
        revokedAt: row.revoked_at,
        expiresAt: row.expires_at,
      })),
      spentTickets: this.#selectTickets
        .all(now)
        .map((row) => ({ jti: row.jti, expiresAt: row.expires_at })),
    };
  }

  async addRevocation(entry: RevocationEntry): Promise<void> {
    this.#upsertRevocation.run(entry.kind, entry.value, entry.revokedAt, entry.expiresAt);
  }

  async spendTicket(jti: string, expiresAt: number): Promise<boolean> {
    return this.#spend.run({ jti, expiresAt, now: Date.now() }).changes === 1;
  }

  async prune(now: number): Promise<void> {
    this.#pruneNow(now);
  }

  async close(): Promise<void> {
    if (this.#db.open) this.#db.close();
  }

  #pruneNow(now: number): void {
    this.#db.transaction(() => {
      this.#pruneRevocations.run(now);
      this.#pruneTickets.run(now);
    })();
  }
}

/** Open (or create) the auth state store of `dataDir`, pruned of expired entries. */
export function openAuthStateStore(
  dataDir: string,
  durability: Durability = "process",
): SqliteAuthStateStore {
  mkdirSync(dataDir, { recursive: true });
  return new SqliteAuthStateStore(join(dataDir, AUTH_STATE_FILE), durability);
}

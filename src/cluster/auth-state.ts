import { randomUUID } from "node:crypto";
import postgres, { type Sql } from "postgres";
import type { AuthStateStore, RevocationEntry } from "../auth/state-store.js";
import type { ResolvedClusterOptions } from "./options.js";
import { migrate } from "./schema.js";
import { TimeoutError, withTimeout } from "./timeout.js";

/** What `PostgresAuthStateStore.open()` needs. */
export type PostgresAuthStateOptions = Pick<
  ResolvedClusterOptions,
  "postgres" | "schema" | "authReloadMs"
>;

/** One channel for every schema; each payload names its schema, so clusters sharing a database stay apart. */
const CHANNEL = "outpost_auth";
/** Postgres refuses NOTIFY payloads of 8000 bytes or more; past this a notification only says "reload". */
const MAX_PAYLOAD = 7_900;

/**
 * Revocations and spent single-use tickets shared by every node, in two Postgres tables.
 *
 * A revocation is written and announced with NOTIFY in one transaction (so the notification
 * leaves only once the row is durable); every node LISTENs and hands it to its subscribers.
 * A notification can be missed while a node's connection is down, so each node also reloads
 * the table every `authReloadMs` and after each (re)LISTEN, and passes on what it had not
 * seen. Every reload also sends a ping through the channel: a listener that did not hear the
 * previous one is replaced (a connection can hang without ever reporting an error).
 *
 * A ticket is spent with `INSERT … ON CONFLICT DO NOTHING`: exactly one node's insert wins.
 */
export class PostgresAuthStateStore implements AuthStateStore {
  #sql: Sql;
  readonly #options: PostgresAuthStateOptions;
  #listener: Sql | undefined;
  readonly #subscribers = new Set<(entry: RevocationEntry) => void>();
  /** `kind:value` → the newest entry seen, so that each change reaches subscribers once. */
  readonly #known = new Map<string, RevocationEntry>();
  #ping: string | undefined;
  #heard = true;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #primed = false;

  private constructor(options: PostgresAuthStateOptions) {
    this.#options = options;
    this.#sql = connect(options);
  }

  /** Create the tables if needed, start listening and the periodic reload. */
  static async open(options: PostgresAuthStateOptions): Promise<PostgresAuthStateStore> {
    const store = new PostgresAuthStateStore(options);
    try {
      await migrate(store.#sql, options.schema);
      await store.#listen();
      // What is in the table now is for load() to report; subscribers hear only of changes.
      for (const entry of await store.#revocations(Date.now())) store.#remember(entry);
      store.#primed = true;
    } catch (error) {
      await store.close();
      throw error;
    }
    store.#schedule();
    return store;
  }

  async load(): Promise<{
    revocations: RevocationEntry[];
    spentTickets: { jti: string; expiresAt: number }[];
  }> {
    const sql = this.#sql;
    const now = Date.now();
    const [revocations, spent] = await Promise.all([
      this.#revocations(now),
      sql<{ jti: string; expires_at: string }[]>`
        SELECT jti, expires_at FROM ${sql(this.#options.schema)}.spent_tickets
        WHERE expires_at > ${now}`,
    ]);
    for (const entry of revocations) this.#remember(entry);
    return {
      revocations,
      spentTickets: spent.map((row) => ({ jti: row.jti, expiresAt: Number(row.expires_at) })),
    };
  }

  async addRevocation(entry: RevocationEntry): Promise<void> {
    const sql = this.#sql;
    const schema = this.#options.schema;
    // Remembered first, so this node's own notification is not handed back to it.
    this.#remember(entry);
    await sql.begin(async (tx) => {
      // A later revocation of the same subject moves its time forward, never back.
      const [row] = await tx<{ revoked_at: string; expires_at: string }[]>`
        INSERT INTO ${tx(schema)}.revocations (kind, value, revoked_at, expires_at)
        VALUES (${entry.kind}, ${entry.value}, ${entry.revokedAt}, ${entry.expiresAt})
        ON CONFLICT (kind, value) DO UPDATE SET
          revoked_at = GREATEST(${tx(schema)}.revocations.revoked_at, excluded.revoked_at),
          expires_at = GREATEST(${tx(schema)}.revocations.expires_at, excluded.expires_at)
        RETURNING revoked_at, expires_at`;
      const stored: RevocationEntry = {
        kind: entry.kind,
        value: entry.value,
        revokedAt: Number(row!.revoked_at),
        expiresAt: Number(row!.expires_at),
      };
      let payload = JSON.stringify({ schema, entry: stored });
      if (Buffer.byteLength(payload) > MAX_PAYLOAD)
        payload = JSON.stringify({ schema, reload: true });
      await tx`SELECT pg_notify(${CHANNEL}, ${payload})`;
    });
  }

  async spendTicket(jti: string, expiresAt: number): Promise<boolean> {
    const sql = this.#sql;
    const rows = await sql`
      INSERT INTO ${sql(this.#options.schema)}.spent_tickets (jti, expires_at)
      VALUES (${jti}, ${expiresAt})
      ON CONFLICT (jti) DO NOTHING
      RETURNING jti`;
    return rows.length === 1;
  }

  async prune(now: number): Promise<void> {
    const sql = this.#sql;
    const schema = this.#options.schema;
    await sql`DELETE FROM ${sql(schema)}.revocations WHERE expires_at <= ${now}`;
    await sql`DELETE FROM ${sql(schema)}.spent_tickets WHERE expires_at <= ${now}`;
    for (const [key, entry] of this.#known) if (entry.expiresAt <= now) this.#known.delete(key);
  }

  /**
   * Hear of revocations made by other stores (other nodes) from now on. Subscribe before
   * calling `load()`, so that nothing falls between the two.
   */
  subscribe(listener: (entry: RevocationEntry) => void): () => void {
    this.#subscribers.add(listener);
    return () => this.#subscribers.delete(listener);
  }

  /** Reload now and pass on what was missed (also runs every `authReloadMs`). */
  async reload(): Promise<void> {
    for (const entry of await this.#revocations(Date.now())) {
      if (this.#remember(entry) && this.#primed) this.#publish(entry);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#subscribers.clear();
    await Promise.all([this.#listener?.end({ timeout: 0 }), this.#sql.end({ timeout: 1 })]);
  }

  async #revocations(now: number): Promise<RevocationEntry[]> {
    const sql = this.#sql;
    const rows = await sql<
      { kind: "sub" | "jti"; value: string; revoked_at: string; expires_at: string }[]
    >`
      SELECT kind, value, revoked_at, expires_at FROM ${sql(this.#options.schema)}.revocations
      WHERE expires_at > ${now}`;
    return rows.map((row) => ({
      kind: row.kind,
      value: row.value,
      revokedAt: Number(row.revoked_at),
      expiresAt: Number(row.expires_at),
    }));
  }

  /** Record `entry`; true when it is news (unseen, or a later revocation of the same target). */
  #remember(entry: RevocationEntry): boolean {
    const key = `${entry.kind}:${entry.value}`;
    const known = this.#known.get(key);
    if (known !== undefined && known.revokedAt >= entry.revokedAt) return false;
    this.#known.set(key, { ...entry });
    return true;
  }

  #publish(entry: RevocationEntry): void {
    for (const subscriber of this.#subscribers) {
      try {
        subscriber({ ...entry });
      } catch {
        // One subscriber's failure must not keep the others from hearing of a revocation.
      }
    }
  }

  async #listen(): Promise<void> {
    // A client of its own, so that a listener that went quiet can be thrown away whole.
    const listener = postgres(this.#options.postgres, {
      max: 1,
      connect_timeout: 5,
      onnotice: () => {},
    });
    this.#listener = listener;
    this.#heard = true;
    await listener.listen(
      CHANNEL,
      (payload) => this.#onNotify(payload),
      // After every (re)LISTEN: what was revoked while not listening is in the table.
      () => void this.reload().catch(() => {}),
    );
  }

  #onNotify(payload: string): void {
    let message: { schema?: unknown; entry?: unknown; ping?: unknown; reload?: unknown };
    try {
      message = JSON.parse(payload);
    } catch {
      return;
    }
    if (message.schema !== this.#options.schema) return;
    if (message.ping !== undefined) {
      if (message.ping === this.#ping) this.#heard = true;
      return;
    }
    if (message.reload === true) {
      void this.reload().catch(() => {});
      return;
    }
    const entry = asEntry(message.entry);
    if (entry !== undefined && this.#remember(entry) && this.#primed) this.#publish(entry);
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => void this.#tick(), this.#options.authReloadMs).unref();
  }

  async #tick(): Promise<void> {
    try {
      // A reload that hangs would stop every later one: past this, both clients are replaced.
      await withTimeout(
        this.#reloadAndPing(),
        Math.max(2_000, this.#options.authReloadMs),
        "auth reload",
      );
    } catch (error) {
      if (error instanceof TimeoutError && !this.#closed) {
        const old = this.#sql;
        this.#sql = connect(this.#options);
        old.end({ timeout: 0 }).catch(() => {});
        this.#heard = false;
      }
      // Otherwise Postgres is unreachable: the next tick tries again.
    } finally {
      this.#schedule();
    }
  }

  async #reloadAndPing(): Promise<void> {
    if (!this.#heard) {
      const old = this.#listener;
      this.#listener = undefined;
      old?.end({ timeout: 0 }).catch(() => {});
      await this.#listen();
    }
    await this.reload();
    this.#ping = randomUUID();
    this.#heard = false;
    const ping = JSON.stringify({ schema: this.#options.schema, ping: this.#ping });
    await this.#sql`SELECT pg_notify(${CHANNEL}, ${ping})`;
  }
}

function connect(options: PostgresAuthStateOptions): Sql {
  return postgres(options.postgres, { max: 2, connect_timeout: 5, onnotice: () => {} });
}

function asEntry(value: unknown): RevocationEntry | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { kind, value: target, revokedAt, expiresAt } = value as Record<string, unknown>;
  if ((kind !== "sub" && kind !== "jti") || typeof target !== "string") return undefined;
  if (typeof revokedAt !== "number" || typeof expiresAt !== "number") return undefined;
  return { kind, value: target, revokedAt, expiresAt };
}

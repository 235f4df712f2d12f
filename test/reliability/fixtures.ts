import { Agent, type Connection, callable, getCurrentAgent } from "../../src/index.js";

/**
 * Agents for the reliability suite. Each write goes through `this.sql`, so "acknowledged"
 * means "the RPC answered after SQLite committed", which is what the durability checks
 * compare against.
 */
export class Ledger extends Agent<unknown, unknown> {
  override onStart() {
    this.sql`CREATE TABLE IF NOT EXISTS counts (key TEXT PRIMARY KEY, n INTEGER NOT NULL)`;
    this.sql`CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL)`;
  }

  override onMessage(connection: Connection, message: string | Buffer) {
    connection.send(
      typeof message === "string" ? `echo:${message.length}` : `bin:${message.length}`,
    );
  }

  /** Add one to `key` and return the committed count. */
  @callable()
  add(key: string) {
    this.sql`INSERT INTO counts (key, n) VALUES (${key}, 1)
             ON CONFLICT(key) DO UPDATE SET n = n + 1`;
    return this.sql<{ n: number }>`SELECT n FROM counts WHERE key = ${key}`[0]!.n;
  }

  @callable()
  get(key: string) {
    return this.sql<{ n: number }>`SELECT n FROM counts WHERE key = ${key}`[0]?.n ?? 0;
  }

  /** Every key and count, for comparing against what clients were told. */
  @callable()
  dump() {
    return this.sql<{ key: string; n: number }>`SELECT key, n FROM counts ORDER BY key`;
  }

  @callable()
  echo(value: unknown) {
    return value;
  }

  @callable()
  async wait(ms: number) {
    await new Promise((resolve) => setTimeout(resolve, Math.min(ms, 10_000)));
    return ms;
  }

  /** Replace the whole state: every other connection receives it (a broadcast). */
  @callable()
  publish(state: unknown) {
    this.setState(state);
    return true;
  }

  @callable()
  big(bytes: number) {
    return "x".repeat(Math.min(bytes, 4 * 1024 * 1024));
  }

  @callable()
  boom() {
    throw new Error("boom\n    at secret/internal/path.ts:1:1");
  }

  /** Store `bytes` of data in one row; fills a small disk quickly. */
  @callable()
  fill(bytes: number) {
    this.sql`INSERT INTO blobs (data) VALUES (${new Uint8Array(bytes)})`;
    return this.sql<{ c: number }>`SELECT COUNT(*) AS c FROM blobs`[0]!.c;
  }

  @callable()
  blobCount() {
    return this.sql<{ c: number }>`SELECT COUNT(*) AS c FROM blobs`[0]!.c;
  }

  @callable()
  integrity() {
    return this.sql<{ integrity_check: string }>`PRAGMA integrity_check`[0]!.integrity_check;
  }

  /** Cap the database near its current size: SQLite then reports "database or disk is full". */
  @callable()
  capPages() {
    return this.sql<{ max_page_count: number }>`PRAGMA max_page_count = 40`[0];
  }

  /** What agent code sees of the calling connection's identity and URL. */
  @callable()
  whoami() {
    const { connection } = getCurrentAgent();
    return { sub: connection?.auth?.sub ?? null, uri: connection?.uri ?? null };
  }

  /** Not decorated: a client must never reach it. */
  secret() {
    return "leaked";
  }
}

/** Fails `onStart` while `failuresLeft` is above zero, then starts normally. */
export class Flaky extends Agent<unknown, { ok: boolean }> {
  static failuresLeft = 0;
  static attempts = 0;
  /** How long each start takes, so concurrent callers overlap one attempt. */
  static startMs = 0;
  override initialState = { ok: true };

  override async onStart() {
    Flaky.attempts++;
    await new Promise((resolve) => setTimeout(resolve, Flaky.startMs));
    if (Flaky.failuresLeft > 0) {
      Flaky.failuresLeft--;
      throw new Error("database migration failed (secret detail)");
    }
  }

  @callable()
  ping() {
    return "pong";
  }
}

/** Throws from every hook a client can trigger. */
export class Crashy extends Agent<unknown, { n: number }> {
  override initialState = { n: 0 };

  override onConnect(_connection: Connection, ctx: { request: Request }) {
    if (new URL(ctx.request.url).searchParams.get("boom") === "connect") {
      throw new Error("onConnect exploded");
    }
  }

  override onMessage(_connection: Connection, message: string | Buffer) {
    if (message === "async") return Promise.reject(new Error("onMessage rejected"));
    throw new Error("onMessage exploded");
  }

  override onStateUpdate() {
    throw new Error("onStateUpdate exploded");
  }

  override onClose() {
    throw new Error("onClose exploded");
  }

  override onError() {
    throw new Error("onError exploded too");
  }

  @callable()
  explode() {
    throw new TypeError("callable exploded");
  }

  @callable()
  async rejectLater() {
    await new Promise((resolve) => setTimeout(resolve, 5));
    throw new RangeError("async callable rejected");
  }

  @callable()
  unserializable() {
    return { n: 1n };
  }

  @callable()
  bump() {
    this.setState({ n: this.state.n + 1 });
    return this.state.n;
  }
}

import { randomBytes } from "node:crypto";
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import type Database from "better-sqlite3";
import postgres, { type Sql } from "postgres";
import { restoreDatabase } from "../../src/cluster/restore.js";
import { ChangeShipper, type ChangeShipperOptions } from "../../src/cluster/shipper.js";
import { ChangeStore } from "../../src/cluster/wal-store.js";
import { AgentDatabase } from "../../src/storage/agent-database.js";

/** The machine's PostgreSQL (trust auth); override with OUTPOST_TEST_POSTGRES. */
export const POSTGRES_URL =
  process.env.OUTPOST_TEST_POSTGRES ?? "postgres://postgres@127.0.0.1:5432/test";

/** A PostgreSQL client that stays quiet about `IF NOT EXISTS` notices. */
export function connectPostgres(url = POSTGRES_URL, options: postgres.Options<{}> = {}): Sql {
  return postgres(url, { max: 4, onnotice: () => {}, ...options });
}

/** A schema of its own for one test, with the cluster's tables; `drop()` removes it. */
export interface TestSchema {
  readonly sql: Sql;
  readonly schema: string;
  readonly store: ChangeStore;
  /** Claim `instance` for `node` as the ownership rules do; resolves with the new epoch. */
  claim(instance: string, node: string): Promise<bigint>;
  drop(): Promise<void>;
}

export async function createTestSchema(): Promise<TestSchema> {
  const sql = connectPostgres();
  const schema = `outpost_test_${randomBytes(6).toString("hex")}`;
  await sql`CREATE SCHEMA ${sql(schema)}`;
  // The ownership tables, as the shared cluster rules define them (created here until the
  // ownership migration is merged).
  await sql`CREATE TABLE ${sql(schema)}.nodes (id text PRIMARY KEY, address text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(), heartbeat_at timestamptz NOT NULL,
    lease_expires_at timestamptz NOT NULL)`;
  await sql`CREATE TABLE ${sql(schema)}.owners (instance text PRIMARY KEY, node_id text NOT NULL,
    epoch bigint NOT NULL)`;
  const store = new ChangeStore(sql, { schema });
  await store.migrate();
  return {
    sql,
    schema,
    store,
    async claim(instance, node) {
      const [row] = await sql<{ epoch: string }[]>`
        INSERT INTO ${sql(schema)}.owners (instance, node_id, epoch) VALUES (${instance}, ${node}, 1)
        ON CONFLICT (instance) DO UPDATE SET node_id = excluded.node_id, epoch = owners.epoch + 1
        RETURNING epoch`;
      return BigInt(row!.epoch);
    },
    async drop() {
      await sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`;
      await sql.end({ timeout: 5 });
    },
  };
}

/** A TCP proxy in front of PostgreSQL that the test can cut and restore. */
export interface PostgresProxy {
  readonly port: number;
  /** Drop every open connection and stop listening (connects are refused) until `resume()`. */
  cut(): Promise<void>;
  /** Listen again on the same port. */
  resume(): Promise<void>;
  /** Keep connections open but forward nothing (a silent network) until `unstall()`. */
  stall(): void;
  unstall(): void;
  close(): Promise<void>;
}

export async function startPostgresProxy(target = new URL(POSTGRES_URL)): Promise<PostgresProxy> {
  const sockets = new Set<Socket>();
  let stalled = false;
  const held: [Socket, Buffer][] = [];
  const forward = (from: Socket, to: Socket) =>
    from.on("data", (data: Buffer) => {
      if (stalled) held.push([to, data]);
      else to.write(data);
    });
  const server: Server = createServer((client) => {
    const upstream = tcpConnect(Number(target.port || 5432), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("close", () => {
        sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
      socket.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    forward(client, upstream);
    forward(upstream, client);
  });
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
  const stop = () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of sockets) socket.destroy();
    return closed;
  };
  await listen(0);
  const { port } = server.address() as { port: number };
  return {
    port,
    cut: stop,
    resume: () => listen(port),
    stall() {
      stalled = true;
    },
    unstall() {
      stalled = false;
      for (const [to, data] of held.splice(0)) if (!to.destroyed) to.write(data);
    },
    close: () => (server.listening ? stop() : Promise.resolve()),
  };
}

/** The URL of PostgreSQL as seen through `proxy`. */
export function proxiedUrl(proxy: PostgresProxy): string {
  const url = new URL(POSTGRES_URL);
  url.hostname = "127.0.0.1";
  url.port = String(proxy.port);
  return url.toString();
}

/** An owner's database and shipper, opened as a node activating an instance would. */
export interface Owner {
  readonly db: AgentDatabase;
  readonly shipper: ChangeShipper;
  /** Close the shipper, then the database. */
  close(): Promise<void>;
}

/**
 * Activate `instance` at `path` with `epoch` (already claimed): restore it from `store`,
 * open it with automatic checkpoints off, and attach a shipper with `options`.
 */
export async function openOwner(
  store: ChangeStore,
  instance: string,
  path: string,
  epoch: bigint,
  options: Partial<ChangeShipperOptions> = {},
): Promise<Owner> {
  const restored = await restoreDatabase(store, instance, path);
  const db = new AgentDatabase(path, "process", { autoCheckpoint: false });
  const shipper = new ChangeShipper({
    db: db.connection,
    path,
    store,
    instance,
    epoch,
    restored,
    ...options,
  });
  return {
    db,
    shipper,
    async close() {
      await shipper.close();
      db.close();
    },
  };
}

/** Every table's rows and the schema of a SQLite database, for comparing two of them. */
export function dumpDatabase(db: Database.Database): Record<string, unknown[]> {
  const master = db
    .prepare("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
    .all() as { type: string; name: string }[];
  const dump: Record<string, unknown[]> = { sqlite_master: master };
  for (const { type, name } of master) {
    if (type !== "table" || name.startsWith("sqlite_")) continue;
    dump[name] = db.prepare(`SELECT * FROM "${name.replaceAll('"', '""')}" ORDER BY rowid`).all();
  }
  return dump;
}

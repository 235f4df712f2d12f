import type Database from "better-sqlite3";
import postgres, { type Sql } from "postgres";
import { afterEach, beforeEach } from "vitest";
import { restoreDatabase } from "../../src/cluster/restore.js";
import { ChangeShipper, type ChangeShipperOptions } from "../../src/cluster/shipper.js";
import { ChangeStore } from "../../src/cluster/wal-store.js";
import { AgentDatabase } from "../../src/storage/agent-database.js";
import { tempDir } from "../helpers/server.js";
import { createTestSchema, POSTGRES_URL } from "./postgres.js";

export { POSTGRES_URL };

/** A PostgreSQL client that stays quiet about `IF NOT EXISTS` notices. */
export function connectPostgres(url = POSTGRES_URL, options: postgres.Options<{}> = {}): Sql {
  return postgres(url, { max: 4, onnotice: () => {}, ...options });
}

/** A schema of its own for one test, migrated, with the change log; `drop()` removes it. */
export interface StorageSchema {
  readonly sql: Sql;
  readonly schema: string;
  readonly store: ChangeStore;
  /** Claim `instance` for `node` as a claim does (the epoch grows); resolves with the epoch. */
  claim(instance: string, node: string): Promise<number>;
  drop(): Promise<void>;
}

export async function createStorageSchema(): Promise<StorageSchema> {
  const { sql, schema, drop } = await createTestSchema();
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
      return Number(row!.epoch);
    },
    drop,
  };
}

/** `StorageSchema` for each test of a file, with what the test leaves behind to clean up. */
export interface StorageTest extends Omit<StorageSchema, "drop"> {
  /** A fresh directory, removed after the test. */
  freshDir(): string;
  /** Run `cleanup` after the test, before the schema is dropped (last added, first run). */
  defer(cleanup: () => unknown): void;
}

/**
 * Give each test of the calling file a `StorageSchema` of its own (made before it, dropped
 * after it) and fresh directories named `dirPrefix…`. Read the schema's members only inside
 * a test or a hook.
 */
export function storagePerTest(dirPrefix: string): StorageTest {
  let current: StorageSchema | undefined;
  const cleanups: Array<() => unknown> = [];
  const now = () => {
    if (current === undefined) throw new Error("the storage schema exists only during a test");
    return current;
  };
  beforeEach(async () => {
    current = await createStorageSchema();
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    await current?.drop();
    current = undefined;
  });
  const storage: StorageTest = {
    get sql() {
      return now().sql;
    },
    get schema() {
      return now().schema;
    },
    get store() {
      return now().store;
    },
    claim: (instance, node) => now().claim(instance, node),
    freshDir() {
      const dir = tempDir(dirPrefix);
      cleanups.push(() => dir.remove());
      return dir.dir;
    },
    defer(cleanup) {
      cleanups.push(cleanup);
    },
  };
  return storage;
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
  epoch: number,
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

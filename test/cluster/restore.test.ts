import { copyFileSync, existsSync, renameSync, statSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { restoreDatabase } from "../../src/cluster/restore.js";
import { ChangeStore } from "../../src/cluster/wal-store.js";
import { AgentDatabase } from "../../src/storage/agent-database.js";
import { dumpDatabase, openOwner, storagePerTest } from "./fixtures.js";

const pg = storagePerTest("outpost-restore-");
const { freshDir } = pg;

/** One statement (or a few in a transaction) a turn may run. */
type Op =
  | { op: "create"; table: number }
  | { op: "index"; table: number; column: "n" | "s" }
  | { op: "dropIndex"; table: number; column: "n" | "s" }
  | { op: "insert"; table: number; rows: number; text: number; blob: number }
  | { op: "update"; table: number; mod: number; blob: number }
  | { op: "delete"; table: number; mod: number }
  | { op: "drop"; table: number }
  | { op: "transaction"; table: number; rows: number; blob: number; commit: boolean }
  | { op: "vacuum" }
  | { op: "checkpoint"; mode: "PASSIVE" | "RESTART" | "TRUNCATE" };

const table = fc.integer({ min: 0, max: 2 });
const column = fc.constantFrom("n" as const, "s" as const);
// Blob sizes from none to several pages (overflow chains of 4 KiB pages).
const blob = fc.constantFrom(0, 1, 100, 3_000, 5_000, 20_000);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant("create" as const), table }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("index" as const), table, column }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("dropIndex" as const), table, column }) },
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant("insert" as const),
      table,
      rows: fc.integer({ min: 1, max: 20 }),
      text: fc.integer({ min: 0, max: 300 }),
      blob,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("update" as const),
      table,
      mod: fc.integer({ min: 1, max: 4 }),
      blob,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("delete" as const),
      table,
      mod: fc.integer({ min: 1, max: 4 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("drop" as const), table }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("transaction" as const),
      table,
      rows: fc.integer({ min: 1, max: 40 }),
      blob,
      commit: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("vacuum" as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("checkpoint" as const),
      mode: fc.constantFrom("PASSIVE" as const, "RESTART" as const, "TRUNCATE" as const),
    }),
  },
);

/** Run `op`; statements on a table that does not exist (yet) fail and change nothing. */
function run(db: Database.Database, op: Op): void {
  const t = `t${"table" in op ? op.table : 0}`;
  try {
    switch (op.op) {
      case "create":
        db.exec(
          `CREATE TABLE IF NOT EXISTS ${t} (id INTEGER PRIMARY KEY, n INTEGER, s TEXT, b BLOB)`,
        );
        return;
      case "index":
        db.exec(`CREATE INDEX IF NOT EXISTS ${t}_${op.column} ON ${t} (${op.column})`);
        return;
      case "dropIndex":
        db.exec(`DROP INDEX IF EXISTS ${t}_${op.column}`);
        return;
      case "insert": {
        const insert = db.prepare(`INSERT INTO ${t} (n, s, b) VALUES (?, ?, randomblob(?))`);
        for (let i = 0; i < op.rows; i++) insert.run(i * 7, "x".repeat(op.text + i), op.blob);
        return;
      }
      case "update":
        db.prepare(`UPDATE ${t} SET n = n + 1, b = randomblob(?) WHERE id % ? = 0`).run(
          op.blob,
          op.mod,
        );
        return;
      case "delete":
        db.prepare(`DELETE FROM ${t} WHERE id % ? = 1`).run(op.mod);
        return;
      case "drop":
        db.exec(`DROP TABLE IF EXISTS ${t}`);
        return;
      case "transaction": {
        // With a small page cache a big transaction spills uncommitted frames into the WAL
        // before it ends; a rolled-back one must never reach the log.
        const insert = db.prepare(`INSERT INTO ${t} (n, s, b) VALUES (?, 'tx', randomblob(?))`);
        db.exec("BEGIN");
        try {
          for (let i = 0; i < op.rows; i++) insert.run(i, op.blob);
        } finally {
          db.exec(op.commit ? "COMMIT" : "ROLLBACK");
        }
        return;
      }
      case "vacuum":
        db.exec("VACUUM");
        return;
      case "checkpoint":
        db.pragma(`wal_checkpoint(${op.mode})`);
        return;
    }
  } catch (error) {
    if (!(error instanceof Error && /no such table/.test(error.message))) throw error;
  }
}

const turnsArb = fc.array(
  fc.record({ ops: fc.array(opArb, { minLength: 1, maxLength: 4 }), flush: fc.boolean() }),
  { minLength: 1, maxLength: 12 },
);

/** Open `path` as an owner would, run `turns`, flushing where they say and at the end. */
async function runTurns(
  instance: string,
  path: string,
  turns: { ops: Op[]; flush: boolean }[],
  small: boolean,
): Promise<AgentDatabase> {
  const epoch = await pg.claim(instance, path);
  // Small thresholds make checkpoints and snapshots happen between turns.
  const { db, shipper } = await openOwner(
    pg.store,
    instance,
    path,
    epoch,
    small ? { checkpointBytes: 32 * 1024, snapshotBytes: 64 * 1024 } : {},
  );
  db.connection.pragma("cache_size = 20");
  for (const turn of turns) {
    for (const op of turn.ops) run(db.connection, op);
    if (turn.flush) await shipper.flush();
  }
  await shipper.flush();
  await shipper.close();
  return db;
}

/** Restore `instance` into a fresh directory, as another node would, and open it. */
async function restoreElsewhere(instance: string): Promise<Database.Database> {
  const path = join(freshDir(), "copy.db");
  await restoreDatabase(pg.store, instance, path);
  return new Database(path);
}

function expectSame(restored: Database.Database, original: Database.Database): void {
  expect(restored.pragma("integrity_check", { simple: true })).toBe("ok");
  // The file holds the database and nothing past its last page.
  const pages = original.pragma("page_count", { simple: true }) as number;
  const pageSize = original.pragma("page_size", { simple: true }) as number;
  expect(statSync(restored.name).size).toBe(pages * pageSize);
  expect(dumpDatabase(restored)).toEqual(dumpDatabase(original));
  // Stronger than the rows: page for page the same database.
  expect(restored.serialize().equals(original.serialize())).toBe(true);
}

describe("restore", () => {
  it("restores random SQL turns (tables, indexes, multi-page blobs, transactions, deletes, VACUUM, checkpoints) on another node equal to the original, passing integrity_check", async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(turnsArb, turnsArb, fc.boolean(), async (first, second, small) => {
        const instance = `prop/run-${run++}`;
        // The first owner writes, then a second node restores and goes on writing.
        const ownerA = await runTurns(instance, join(freshDir(), "a.db"), first, small);
        const copy = await restoreElsewhere(instance);
        expectSame(copy, ownerA.connection);
        copy.close();
        ownerA.close();

        const pathB = join(freshDir(), "b.db");
        const ownerB = await runTurns(instance, pathB, second, small);
        const copyB = await restoreElsewhere(instance);
        expectSame(copyB, ownerB.connection);
        copyB.close();
        ownerB.close();
      }),
      { numRuns: 30 },
    );
  }, 240_000);
});

describe("restore details", () => {
  it("splits a turn larger than chunkBytes over several rows of one change, and restores it", async () => {
    const store = new ChangeStore(pg.sql, { schema: pg.schema, chunkBytes: 64 * 1024 });
    const instance = "big/turn";
    const epoch = await pg.claim(instance, "node-a");
    const owner = await openOwner(store, instance, join(freshDir(), "owner.db"), epoch);
    owner.db.connection.exec("CREATE TABLE blobs (b BLOB)");
    await owner.shipper.flush();
    owner.db.connection.prepare("INSERT INTO blobs (b) VALUES (randomblob(1000000))").run();
    await owner.shipper.flush();
    const [last] = await pg.sql<{ chunks: number }[]>`
      SELECT count(*)::int AS chunks FROM ${pg.sql(pg.schema)}.changes
      WHERE instance = ${instance} AND seq = (SELECT max(seq) FROM ${pg.sql(pg.schema)}.changes)`;
    // About 245 pages of 4 KiB, 16 pages a row.
    expect(last!.chunks).toBeGreaterThanOrEqual(15);
    const copy = await restoreElsewhere(instance);
    expectSamePages(copy, owner.db.connection);
    copy.close();
    await owner.close();
  });

  it("keeps a database from single-node mode when the log is empty, and ships it as the first snapshot", async () => {
    const instance = "room/migrated";
    const path = join(freshDir(), "single.db");
    const single = new AgentDatabase(path);
    single.connection.exec("CREATE TABLE kept (n INTEGER); INSERT INTO kept VALUES (1), (2)");
    single.writeJson("state", JSON.stringify({ count: 2 }));
    single.close();

    const owner = await openOwner(pg.store, instance, path, await pg.claim(instance, "a"));
    expect(owner.db.connection.prepare("SELECT count(*) AS n FROM kept").get()).toEqual({ n: 2 });
    await owner.shipper.flush();
    const copy = await restoreElsewhere(instance);
    expectSame(copy, owner.db.connection);
    expect(
      JSON.parse((copy.prepare("SELECT value FROM _outpost_kv").get() as { value: string }).value),
    ).toEqual({ count: 2 });
    copy.close();
    await owner.close();
  });

  it("replaces a stale local copy (database, WAL and wal-index) with the durable one", async () => {
    const instance = "stale/cache";
    const dir = freshDir();
    const path = join(dir, "cache.db");
    const owner = await openOwner(
      pg.store,
      instance,
      join(freshDir(), "owner.db"),
      await pg.claim(instance, "a"),
    );
    owner.db.connection.exec("CREATE TABLE kept (n INTEGER); INSERT INTO kept VALUES (1)");
    await owner.shipper.flush();

    // A copy this node left behind, with rows the log never had, still in its WAL.
    const stale = new Database(path);
    stale.pragma("journal_mode = WAL");
    stale.pragma("wal_autocheckpoint = 0");
    stale.exec("CREATE TABLE gone (n INTEGER); INSERT INTO gone VALUES (7)");
    expect(existsSync(`${path}-wal`)).toBe(true);
    // Copy the files aside as a crashed process would leave them (closing would checkpoint).
    for (const suffix of ["", "-wal", "-shm"])
      copyFileSync(`${path}${suffix}`, `${path}.old${suffix}`);
    stale.close();
    for (const suffix of ["", "-wal", "-shm"])
      renameSync(`${path}.old${suffix}`, `${path}${suffix}`);

    await restoreDatabase(pg.store, instance, path);
    expect(existsSync(`${path}-wal`)).toBe(false);
    const restored = new Database(path);
    expectSame(restored, owner.db.connection);
    restored.close();
    await owner.close();
  });
});

describe("restore time", () => {
  it("prints restore time against database size (1, 10, 50 MB), from the log and from a snapshot, each restore page for page equal to the original", async () => {
    const lines = [
      "| database | restore from log | restore from snapshot | rows read (snapshot) | shipping the snapshot |",
    ];
    lines.push("| --- | --- | --- | --- | --- |");
    for (const megabytes of [1, 10, 50]) {
      const instance = `size/${megabytes}mb`;
      const path = join(freshDir(), "owner.db");
      const epoch = await pg.claim(instance, "node-a");
      const { db, shipper } = await openOwner(pg.store, instance, path, epoch, {
        timeoutMs: 120_000,
      });
      db.connection.exec("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB)");
      const insert = db.connection.prepare("INSERT INTO blobs (b) VALUES (randomblob(?))");
      // One megabyte a turn.
      for (let turn = 0; turn < megabytes; turn++) {
        for (let i = 0; i < 16; i++) insert.run(64 * 1024);
        await shipper.flush();
      }
      const fromLog = await timedRestore(instance);
      expectSamePages(fromLog.db, db.connection);
      fromLog.db.close();

      const shipStarted = performance.now();
      await shipper.snapshot();
      const shipMs = performance.now() - shipStarted;
      const fromBase = await timedRestore(instance);
      expectSamePages(fromBase.db, db.connection);
      fromBase.db.close();
      await shipper.close();
      db.close();
      lines.push(
        `| ${megabytes} MB | ${fromLog.ms.toFixed(0)} ms | ${fromBase.ms.toFixed(0)} ms | ${fromBase.rows} | ${shipMs.toFixed(0)} ms |`,
      );
    }
    console.log(`restore time against database size\n${lines.join("\n")}`);
  }, 600_000);
});

/** `expectSame` without a row-by-row comparison, which is slow for tens of megabytes. */
function expectSamePages(restored: Database.Database, original: Database.Database): void {
  expect(restored.pragma("integrity_check", { simple: true })).toBe("ok");
  expect(restored.serialize().equals(original.serialize())).toBe(true);
}

async function timedRestore(instance: string) {
  const path = join(freshDir(), "copy.db");
  const restored = await restoreDatabase(pg.store, instance, path);
  return { db: new Database(path), ms: restored.ms, rows: restored.rows };
}

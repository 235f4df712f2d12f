import { spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { FencedError, NotDurableError } from "../../src/cluster/errors.js";
import { restoreDatabase } from "../../src/cluster/restore.js";
import { ChangeStore } from "../../src/cluster/wal-store.js";
import { waitFor } from "../helpers/wait.js";
import { connectPostgres, openOwner, POSTGRES_URL, storagePerTest } from "./fixtures.js";
import { POSTGRES_TARGET, viaPort } from "./postgres.js";
import { startTcpProxy } from "./tcp-proxy.js";

const STORM = fileURLToPath(new URL("./fixtures/storm-writer.ts", import.meta.url));

const pg = storagePerTest("outpost-ship-");
const { freshDir } = pg;

/** Rows of `table` in `instance`'s database restored into a fresh directory. */
async function restoredRows<Row>(instance: string, query: string): Promise<Row[]> {
  const path = join(freshDir(), "copy.db");
  await restoreDatabase(pg.store, instance, path);
  const copy = new Database(path, { readonly: true });
  try {
    expect(copy.pragma("integrity_check", { simple: true })).toBe("ok");
    return copy.prepare(query).all() as Row[];
  } finally {
    copy.close();
  }
}

/** An owner of `instance` on a fresh directory, shipping through `store`; one row a turn. */
async function openTurns(instance: string, store: ChangeStore, epoch: number, timeoutMs?: number) {
  const owner = await openOwner(store, instance, join(freshDir(), "owner.db"), epoch, {
    retryMs: 50,
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  });
  pg.defer(() => owner.close());
  const { db, shipper } = owner;
  db.connection.exec("CREATE TABLE IF NOT EXISTS turns (n INTEGER PRIMARY KEY)");
  const insert = db.connection.prepare("INSERT INTO turns (n) VALUES (?)");
  return { db, shipper, turn: (n: number) => insert.run(n) };
}

/** An owner of `instance` whose PostgreSQL connection goes through a proxy the test owns. */
async function openBehindProxy(instance: string) {
  const proxy = await startTcpProxy(POSTGRES_TARGET);
  pg.defer(() => proxy.close());
  const viaProxy = connectPostgres(viaPort(POSTGRES_URL, proxy.port), { max: 1 });
  pg.defer(() => viaProxy.end({ timeout: 1 }));
  const store = new ChangeStore(viaProxy, { schema: pg.schema });
  const owner = await openTurns(instance, store, await pg.claim(instance, "node-a"), 1_500);
  return { proxy, owner };
}

describe("fencing", () => {
  it("refuses a write after another node claimed the instance with FencedError inside PostgreSQL, and a restore sees none of it", async () => {
    const instance = "room/fenced";
    const epoch = await pg.claim(instance, "node-a");
    const owner = await openTurns(instance, pg.store, epoch);
    owner.turn(1);
    await owner.shipper.flush();
    const [before] = await pg.sql`SELECT count(*)::int AS rows FROM ${pg.sql(pg.schema)}.changes`;

    expect(await pg.claim(instance, "node-b")).toBe(epoch + 1);
    owner.turn(2);
    const refused = await owner.shipper.flush().catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(FencedError);
    expect(refused).toMatchObject({ code: "ERR_CLUSTER_FENCED", epoch, currentEpoch: epoch + 1 });
    // Final: later turns are refused too, without another try.
    owner.turn(3);
    await expect(owner.shipper.flush()).rejects.toBeInstanceOf(FencedError);
    expect(owner.shipper.status.fenced).toBe(true);

    const [after] = await pg.sql`SELECT count(*)::int AS rows FROM ${pg.sql(pg.schema)}.changes`;
    expect(after).toEqual(before);
    expect(await restoredRows(instance, "SELECT n FROM turns ORDER BY n")).toEqual([{ n: 1 }]);
  });

  it("refuses a write for an instance nobody has claimed", async () => {
    const owner = await openTurns("room/unclaimed", pg.store, 1);
    owner.turn(1);
    await expect(owner.shipper.flush()).rejects.toMatchObject({
      code: "ERR_CLUSTER_FENCED",
      currentEpoch: undefined,
    });
    const [row] = await pg.sql`SELECT count(*)::int AS rows FROM ${pg.sql(pg.schema)}.changes`;
    expect(row).toEqual({ rows: 0 });
  });

  it("makes a write that meets a claim in progress wait for it, then refuses it with FencedError", async () => {
    const instance = "room/racing";
    const epoch = await pg.claim(instance, "node-a");
    const owner = await openTurns(instance, pg.store, epoch);
    owner.turn(1);
    await owner.shipper.flush();

    // Another node's claim, held open: it has bumped the epoch but not committed yet.
    let commitClaim!: () => void;
    const claimHeld = new Promise<void>((resolve) => {
      commitClaim = resolve;
    });
    const claimer = connectPostgres(POSTGRES_URL, { max: 1 });
    pg.defer(() => claimer.end({ timeout: 5 }));
    let claimed!: () => void;
    const claimStarted = new Promise<void>((resolve) => {
      claimed = resolve;
    });
    const claim = claimer.begin(async (tx) => {
      await tx`UPDATE ${tx(pg.schema)}.owners SET node_id = 'node-b', epoch = epoch + 1
        WHERE instance = ${instance}`;
      claimed();
      await claimHeld;
    });
    await claimStarted;

    owner.turn(2);
    let settled = false;
    const flushed = owner.shipper.flush().finally(() => {
      settled = true;
    });
    // The write's FOR SHARE read of the owner row waits on the claim's row lock.
    await waitFor(
      async () => {
        const [row] = await pg.sql<{ waiting: number }[]>`
          SELECT count(*)::int AS waiting FROM pg_stat_activity
          WHERE wait_event_type = 'Lock' AND query LIKE '%FOR SHARE%'`;
        return row!.waiting > 0;
      },
      "the write to wait on the claim",
      15_000,
    );
    expect(settled).toBe(false);
    commitClaim();
    await claim;
    await expect(flushed).rejects.toBeInstanceOf(FencedError);
    expect(await restoredRows(instance, "SELECT n FROM turns ORDER BY n")).toEqual([{ n: 1 }]);
  });
});

describe("durability", () => {
  it("keeps every turn whose flush resolved when the owner is killed with SIGKILL in a write storm, restored on a fresh directory", async () => {
    const instance = "room/storm";
    const epoch = await pg.claim(instance, "node-a");
    const child = spawn(
      process.execPath,
      ["--import", "tsx", STORM, POSTGRES_URL, pg.schema, instance, String(epoch), freshDir()],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.once("exit", (_code, signal) => resolve(signal)),
    );
    pg.defer(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    });
    let acked = 0;
    let buffered = "";
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split("\n");
      buffered = lines.pop()!;
      for (const line of lines) {
        if (line === "ready") continue;
        const n = Number(line);
        // Acknowledgements come in turn order.
        expect(n).toBe(acked + 1);
        acked = n;
        // Kill in the same tick the acknowledgement arrived in, mid-storm.
        if (acked === 3_000) child.kill("SIGKILL");
      }
    });
    expect(await exited).toBe("SIGKILL");
    expect(acked).toBeGreaterThanOrEqual(3_000);

    const rows = await restoredRows<{ n: number }>(instance, "SELECT n FROM storm ORDER BY n");
    const ns = rows.map((row) => row.n);
    // Every acknowledged turn is there, and what is there is a prefix of the turns.
    expect(ns.length).toBeGreaterThanOrEqual(acked);
    expect(ns).toEqual(Array.from({ length: ns.length }, (_, i) => i + 1));
    const [log] = await pg.sql<{ appends: number; bases: number; first: number }[]>`
      SELECT count(DISTINCT seq)::int AS appends, count(*) FILTER (WHERE base)::int AS bases,
             min(seq)::int AS first
      FROM ${pg.sql(pg.schema)}.changes WHERE instance = ${instance}`;
    // How many appends, checkpoints and snapshots fit before the kill depends on the
    // machine's load, so they are reported, not asserted (the snapshot test asserts them).
    console.log(
      `storm: ${acked} turns acknowledged, ${ns.length} restored; log from seq ${log!.first}, ` +
        `${log!.appends} appends kept`,
    );
  }, 120_000);

  it("rejects flush while PostgreSQL is unreachable, then resumes shipping by itself and loses nothing acknowledged", async () => {
    const instance = "room/outage";
    const { proxy, owner } = await openBehindProxy(instance);

    for (let n = 1; n <= 20; n++) {
      owner.turn(n);
      await owner.shipper.flush();
    }
    // Every connection is dropped, and new ones are dropped as they come.
    proxy.cut("refuse");
    const refused: unknown[] = [];
    const cutAt = performance.now();
    for (let n = 21; n <= 23; n++) {
      owner.turn(n);
      refused.push(await owner.shipper.flush().catch((error: unknown) => error));
    }
    const refusedMs = performance.now() - cutAt;
    // Fail closed: nothing was acknowledged while PostgreSQL could not be reached.
    for (const error of refused) {
      expect(error).toBeInstanceOf(NotDurableError);
      expect(error).toMatchObject({ code: "ERR_CLUSTER_NOT_DURABLE" });
    }
    expect(owner.shipper.status.durable).toBe(false);
    expect(await restoredRows(instance, "SELECT max(n) AS n FROM turns")).toEqual([{ n: 20 }]);

    proxy.restore();
    // No flush is called: the shipper's own retry ships turns 21 to 23.
    const resumedAt = performance.now();
    await waitFor(() => owner.shipper.status.durable, "shipping to resume by itself", 30_000);
    console.log(
      `outage: 3 flushes refused in ${refusedMs.toFixed(0)} ms; shipping resumed ` +
        `${(performance.now() - resumedAt).toFixed(0)} ms after PostgreSQL was reachable again`,
    );
    expect(owner.shipper.status.lastError).toBeUndefined();
    owner.turn(24);
    await owner.shipper.flush();
    const rows = await restoredRows<{ n: number }>(instance, "SELECT n FROM turns ORDER BY n");
    expect(rows.map((row) => row.n)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
  }, 60_000);

  it("rejects a flush with timeout when PostgreSQL goes silent mid-append, and acknowledges nothing", async () => {
    const instance = "room/silent";
    const { proxy, owner } = await openBehindProxy(instance);
    owner.turn(1);
    await owner.shipper.flush();

    // Connections stay open but nothing gets through, either way.
    proxy.cut("blackhole");
    owner.turn(2);
    await expect(owner.shipper.flush()).rejects.toMatchObject({
      code: "ERR_CLUSTER_NOT_DURABLE",
      reason: "timeout",
    });
    owner.turn(3);
    await expect(owner.shipper.flush()).rejects.toMatchObject({ reason: "timeout" });
    expect(owner.shipper.status.durable).toBe(false);
    expect(await restoredRows(instance, "SELECT max(n) AS n FROM turns")).toEqual([{ n: 1 }]);
  }, 60_000);
});

describe("continuing", () => {
  it("ships only a restored owner's own changes, not a new snapshot, and they restore on the next node", async () => {
    const instance = "room/handover";
    const first = await openTurns(instance, pg.store, await pg.claim(instance, "node-a"));
    first.turn(1);
    await first.shipper.flush();

    const second = await openTurns(instance, pg.store, await pg.claim(instance, "node-b"));
    second.turn(2);
    await second.shipper.flush();
    const rows = await pg.sql<{ base: boolean }[]>`
      SELECT DISTINCT seq, base FROM ${pg.sql(pg.schema)}.changes WHERE instance = ${instance}
      ORDER BY seq`;
    // The first owner's snapshot of its new database, its turn, the second owner's turn.
    expect(rows.map((row) => row.base)).toEqual([true, false, false]);
    expect(await restoredRows(instance, "SELECT n FROM turns ORDER BY n")).toEqual([
      { n: 1 },
      { n: 2 },
    ]);
  });

  it("takes a snapshot once the log outgrows snapshotBytes and the database, and deletes the log before it", async () => {
    const instance = "room/snapshots";
    const epoch = await pg.claim(instance, "node-a");
    const owner = await openOwner(pg.store, instance, join(freshDir(), "owner.db"), epoch, {
      snapshotBytes: 64 * 1024,
    });
    pg.defer(() => owner.close());
    const sqlite = owner.db.connection;
    sqlite.exec("CREATE TABLE churn (k INTEGER PRIMARY KEY, pad BLOB)");
    const write = sqlite.prepare(
      "INSERT OR REPLACE INTO churn (k, pad) VALUES (?, randomblob(3000))",
    );
    const table = pg.sql(pg.schema);
    const log = async () => {
      const [row] = await pg.sql<{ first: number; bases: number; logBytes: number }[]>`
        SELECT min(seq)::int AS first, count(*) FILTER (WHERE base)::int AS bases,
               coalesce(sum(octet_length(data)) FILTER (WHERE NOT base), 0)::int AS "logBytes"
        FROM ${table}.changes WHERE instance = ${instance}`;
      return row!;
    };
    // 200 turns rewriting the same 8 rows: the database stays small, the log would not.
    for (let n = 0; n < 200; n++) {
      write.run(n % 8);
      await owner.shipper.flush();
      const { logBytes } = await log();
      const dbBytes = (sqlite.pragma("page_count", { simple: true }) as number) * 4096;
      // Never more than the threshold (or the database) plus the batch that crossed it.
      expect(logBytes).toBeLessThanOrEqual(Math.max(64 * 1024, dbBytes) + 3 * 4096);
    }
    const { first, bases } = await log();
    // Only the newest snapshot is kept, and nothing from before it.
    expect(bases).toBe(1);
    expect(first).toBeGreaterThan(1);
    const restored = await restoredRows<{ k: number }>(instance, "SELECT k FROM churn ORDER BY k");
    expect(restored.map((row) => row.k)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });
});

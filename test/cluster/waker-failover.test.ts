import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { tempDir } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";
import type { NodeProcess } from "./node-process.js";
import { createTestSchema, type TestSchema } from "./postgres.js";
import { createWakeTables, runsOf, spawnWakeNode, wakeupOf } from "./wake-nodes.js";

let db: TestSchema;
let dir: { dir: string; remove(): void };
const nodes: NodeProcess[] = [];

beforeEach(async () => {
  db = await createTestSchema();
  await createWakeTables(db.sql, db.schema);
  dir = tempDir();
});

afterEach(async () => {
  await Promise.all(nodes.splice(0).map((node) => node.kill()));
  await db.drop();
  dir.remove();
});

async function spawn(id: string, hangMs: number, scanMs = 500): Promise<NodeProcess> {
  const node = await spawnWakeNode(db.schema, id, { dataDir: dir.dir, scanMs, hangMs });
  nodes.push(node);
  return node;
}

describe("schedules across the cluster", () => {
  it("an owner killed with kill -9: the other node wakes its instances within seconds, and each due time runs once in total", async () => {
    const { sql, schema } = db;
    // a's callbacks hang after recording their run, so a dies in the middle of one.
    const a = await spawn("a", 60_000);
    const b = await spawn("b", 0);
    const interval = "ticker/interval";
    const oneShot = "ticker/one-shot";
    expect(await a.send({ cmd: "every", instance: interval, seconds: 2 })).toMatchObject({
      ok: true,
    });
    await waitFor(
      async () => (await runsOf(sql, schema, interval)).length === 1,
      "the owner's first run",
      15_000,
    );
    // Due after the owner is gone: nobody but another node can run it.
    expect(await a.send({ cmd: "delay", instance: oneShot, seconds: 1 })).toMatchObject({
      ok: true,
    });
    a.child.kill("SIGKILL");
    const killedAt = Date.now();

    const wokeInterval = await b.waitEvent(
      (line) => line.event === "woken" && line.instance === interval,
      "the other node to wake the interval's instance",
      20_000,
    );
    const wokeOneShot = await b.waitEvent(
      (line) => line.event === "woken" && line.instance === oneShot,
      "the other node to wake the one-shot's instance",
      20_000,
    );
    const latency = [wokeInterval, wokeOneShot].map((line) => (line.at as number) - killedAt);
    console.log(`woken ${latency.join(" ms, ")} ms after kill -9 (lease 3000 ms, scan 500 ms)`);
    for (const ms of latency) expect(ms).toBeLessThan(10_000);

    await waitFor(
      async () => (await runsOf(sql, schema, oneShot)).length === 1,
      "the one-shot to run on the other node",
      10_000,
    );
    await waitFor(
      async () => (await runsOf(sql, schema, interval)).some((run) => run.node === "b"),
      "the interval to run on the other node",
      10_000,
    );
    // Long enough for a repeated due time to show up.
    await new Promise((resolve) => setTimeout(resolve, 2_500));

    const intervalRuns = await runsOf(sql, schema, interval);
    const dues = intervalRuns.map((run) => run.due);
    expect(new Set(dues).size).toBe(dues.length);
    // The due time that was running when a died is not run again by b.
    expect(intervalRuns[0]!.node).toBe("a");
    expect(intervalRuns.filter((run) => run.due === intervalRuns[0]!.due)).toHaveLength(1);
    expect(intervalRuns.slice(1).every((run) => run.node === "b")).toBe(true);
    const oneShotRuns = await runsOf(sql, schema, oneShot);
    expect(oneShotRuns).toEqual([{ due: oneShotRuns[0]!.due, node: "b" }]);
    // Nothing left due for the one-shot's instance: its row is gone; the interval's is not.
    await waitFor(
      async () => (await wakeupOf(sql, schema, oneShot)) === undefined,
      "the one-shot's wakeup row to be removed",
    );
    expect(await wakeupOf(sql, schema, interval)).toBeGreaterThan(Date.now() - 5_000);
  });

  it("a live owner's instances are never woken by another node, though their rows are due while it runs them", async () => {
    const { sql, schema } = db;
    // Each run holds the instance's row past due for 3 s while its owner is alive.
    const a = await spawn("a", 3_000);
    const b = await spawn("b", 0, 200);
    const instance = "ticker/live";
    expect(await a.send({ cmd: "every", instance, seconds: 1 })).toMatchObject({ ok: true });
    const watchStart = Date.now();
    let sawDue = 0;
    while (Date.now() - watchStart < 7_000) {
      const due = await wakeupOf(sql, schema, instance);
      if (due !== undefined && due < Date.now()) sawDue++;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // The row was due again and again while b scanned, and b left it to its owner.
    expect(sawDue).toBeGreaterThan(5);
    const stats = (await b.send({ cmd: "stats" })).result as { scans: number; woken: number };
    expect(stats.scans).toBeGreaterThan(10);
    expect(stats.woken).toBe(0);
    expect(b.events.some((line) => line.event === "woken")).toBe(false);
    const runs = await runsOf(sql, schema, instance);
    expect(runs.length).toBeGreaterThanOrEqual(2);
    expect(runs.every((run) => run.node === "a")).toBe(true);

    // The same waker takes the instance as soon as its owner is gone.
    a.child.kill("SIGKILL");
    await b.waitEvent(
      (line) => line.event === "woken" && line.instance === instance,
      "the other node to wake the instance once its owner died",
      20_000,
    );
    await waitFor(
      async () => (await runsOf(sql, schema, instance)).some((run) => run.node === "b"),
      "a run on the other node",
      10_000,
    );
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WAKEUP_RETRY_MS, WakeupWriter } from "../../src/cluster/wakeups.js";
import { tempDir } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";
import type { NodeProcess } from "./node-process.js";
import { nodeOptions, startNode } from "./nodes.js";
import {
  createTestSchema,
  POSTGRES_TARGET,
  POSTGRES_URL,
  type TestSchema,
  viaPort,
} from "./postgres.js";
import { startTcpProxy } from "./tcp-proxy.js";
import { createWakeTables, leaseExpired, spawnWakeNode, wakeupOf } from "./wake-nodes.js";

let db: TestSchema;
let dir: { dir: string; remove(): void };
const nodes: NodeProcess[] = [];

beforeAll(async () => {
  db = await createTestSchema();
  await createWakeTables(db.sql, db.schema);
  dir = tempDir();
});

afterAll(async () => {
  await Promise.all(nodes.map((node) => node.kill()));
  await db.drop();
  dir.remove();
});

describe("wakeup index", () => {
  it("a former owner (SIGSTOP past its lease) cannot update the wakeup row", async () => {
    const { sql, schema } = db;
    const instance = "ticker/zombie";
    const spawn = async (id: string) => {
      const node = await spawnWakeNode(schema, id, { dataDir: dir.dir, scanMs: 500, hangMs: 0 });
      nodes.push(node);
      return node;
    };
    const zombie = await spawn("zombie");
    // An hour away: no waker has any reason to touch the row meanwhile.
    const first = Date.now() + 3_600_000;
    expect(await zombie.send({ cmd: "own", instance })).toMatchObject({
      ok: true,
      result: { epoch: 1 },
    });
    expect(await zombie.send({ cmd: "setWakeup", instance, due: first })).toMatchObject({
      ok: true,
    });
    expect(await wakeupOf(sql, schema, instance)).toBe(first);

    zombie.child.kill("SIGSTOP");
    await waitFor(
      () => leaseExpired(sql, schema, "zombie"),
      "the paused owner's lease to expire",
      15_000,
    );
    const successor = await spawn("successor");
    expect(await successor.send({ cmd: "own", instance })).toMatchObject({
      ok: true,
      result: { epoch: 2 },
    });
    const second = first + 60_000;
    expect(await successor.send({ cmd: "setWakeup", instance, due: second })).toMatchObject({
      ok: true,
    });

    // Read the moment the process runs again: through its writer, and straight to
    // Postgres with the epoch it held.
    const viaWriter = zombie.send({ cmd: "setWakeup", instance, due: 1 });
    const raw = zombie.send({ cmd: "rawSetWakeup", instance, epoch: 1, due: 2 });
    const removal = zombie.send({ cmd: "rawSetWakeup", instance, epoch: 1 });
    zombie.child.kill("SIGCONT");
    const refused = await viaWriter;
    expect(refused.ok).toBe(false);
    expect(["ERR_CLUSTER_NOT_SERVING", "ERR_CLUSTER_NOT_OWNER"]).toContain(refused.code);
    expect(await raw).toMatchObject({ ok: false, code: "ERR_CLUSTER_FENCED" });
    expect(await removal).toMatchObject({ ok: false, code: "ERR_CLUSTER_FENCED" });

    // Serving again, it still owns nothing of this instance.
    await zombie.waitEvent((line) => line.event === "serving", "the old node to serve again");
    expect(await zombie.send({ cmd: "setWakeup", instance, due: 3 })).toMatchObject({
      ok: false,
      code: "ERR_CLUSTER_NOT_OWNER",
    });
    expect(await wakeupOf(sql, schema, instance)).toBe(second);
  });

  it("a wakeup write that failed for want of Postgres is written once Postgres is back", async () => {
    const { sql, schema } = db;
    const proxy = await startTcpProxy(POSTGRES_TARGET);
    // A lease long enough that the node keeps serving through the cut.
    const node = await startNode(
      nodeOptions(viaPort(POSTGRES_URL, proxy.port), schema, "retrying", {
        leaseMs: 10_000,
        heartbeatMs: 1_000,
        fenceMarginMs: 2_000,
      }),
    );
    const writer = new WakeupWriter(node.ownership, schema);
    try {
      const instance = "ticker/retried";
      expect(await node.ownership.claim(instance)).toEqual({ owned: true, epoch: 1 });
      const first = Date.now() + 3_600_000;
      await writer.set(instance, first);
      proxy.cut("refuse");
      const second = first + 60_000;
      await expect(writer.set(instance, second)).rejects.toThrow();
      expect(node.membership.serving).toBe(true);
      proxy.restore();
      const restoredAt = Date.now();
      await waitFor(
        async () => (await wakeupOf(sql, schema, instance)) === second,
        "the failed write to be retried",
        10_000,
      );
      console.log(`wakeup write retried ${Date.now() - restoredAt} ms after Postgres was back`);
      expect(Date.now() - restoredAt).toBeLessThan(WAKEUP_RETRY_MS * 5);
    } finally {
      writer.close();
      await node.close();
      await proxy.close();
    }
  });
});

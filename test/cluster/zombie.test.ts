import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../helpers/wait.js";
import { type NodeProcess, spawnNode } from "./node-process.js";
import { nodeOptions, startNode, type TestNode } from "./nodes.js";
import { createTestSchema, POSTGRES_URL, type TestSchema } from "./postgres.js";

let db: TestSchema;
let zombie: NodeProcess | undefined;
let successor: TestNode | undefined;

beforeAll(async () => {
  db = await createTestSchema();
  await db.sql`CREATE TABLE ${db.sql(db.schema)}.fence_test (instance text, value int)`;
});

afterAll(async () => {
  await zombie?.kill();
  await successor?.close();
  await db.drop();
});

describe("zombie owner", () => {
  it("an owner paused past its lease is fenced: its writes are refused after another node claims, and it reports the loss", async () => {
    const { sql, schema } = db;
    const instance = "counter/zombie";
    zombie = await spawnNode(nodeOptions(POSTGRES_URL, schema, "zombie"));
    const claim = await zombie.send({ cmd: "claim", instance });
    expect(claim).toMatchObject({ ok: true, result: { owned: true, epoch: 1 } });
    expect(await zombie.send({ cmd: "write", instance, value: 1 })).toMatchObject({ ok: true });

    zombie.child.kill("SIGSTOP");
    const stoppedAt = Date.now();
    // Postgres's clock decides when the paused owner's lease is over.
    await waitFor(
      async () => {
        const [row] = await sql`
          SELECT lease_expires_at < now() AS expired FROM ${sql(schema)}.nodes WHERE id = 'zombie'`;
        return row?.expired === true;
      },
      "the paused owner's lease to expire",
      15_000,
    );
    successor = await startNode(nodeOptions(POSTGRES_URL, schema, "successor"));
    expect(await successor.ownership.claim(instance)).toEqual({ owned: true, epoch: 2 });

    // Queued while the process is stopped: it reads them the moment it runs again.
    const write = zombie.send({ cmd: "write", instance, value: 2 });
    const rawWrite = zombie.send({ cmd: "rawWrite", instance, epoch: 1, value: 3 });
    zombie.child.kill("SIGCONT");
    console.log(`zombie paused for ${Date.now() - stoppedAt} ms`);

    // Through Ownership it is refused before Postgres is asked: not serving (or, should a
    // renewal already have answered, no longer the owner). Straight to Postgres, the epoch
    // check refuses it.
    const refused = await write;
    expect(refused.ok).toBe(false);
    expect(["ERR_CLUSTER_NOT_SERVING", "ERR_CLUSTER_NOT_OWNER"]).toContain(refused.code);
    expect(await rawWrite).toMatchObject({ ok: false, code: "ERR_CLUSTER_FENCED" });
    await zombie.waitEvent((line) => line.event === "fenced", "the old owner to stop serving");
    await zombie.waitEvent(
      (line) => line.event === "lost" && line.instance === instance && line.epoch === 1,
      "the old owner to report that it lost the instance",
    );

    // It registers again by itself, and now sees the instance elsewhere.
    await zombie.waitEvent((line) => line.event === "serving", "the old node to serve again");
    const order = zombie.events.map((line) => line.event);
    expect(order.indexOf("serving")).toBeGreaterThan(order.indexOf("fenced"));
    expect(await zombie.send({ cmd: "claim", instance })).toMatchObject({
      ok: true,
      result: { owned: false, owner: { nodeId: "successor", epoch: 2 } },
    });
    expect(await zombie.send({ cmd: "write", instance, value: 4 })).toMatchObject({
      ok: false,
      code: "ERR_CLUSTER_NOT_OWNER",
    });

    await successor.ownership.write(instance, async (tx) => {
      await tx`INSERT INTO ${tx(schema)}.fence_test (instance, value) VALUES (${instance}, 5)`;
    });
    const rows = await sql`
      SELECT value FROM ${sql(schema)}.fence_test WHERE instance = ${instance} ORDER BY value`;
    expect(rows.map((row) => row.value)).toEqual([1, 5]);
  });
});

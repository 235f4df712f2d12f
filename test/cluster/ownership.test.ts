import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FencedError } from "../../src/cluster/errors.js";
import { fencedWrite } from "../../src/cluster/fencing.js";
import type { ClaimResult } from "../../src/cluster/ownership.js";
import { type NodeProcess, spawnNode } from "./node-process.js";
import { nodeOptions, startNode, type TestNode } from "./nodes.js";
import { createTestSchema, POSTGRES_URL, type TestSchema } from "./postgres.js";

let db: TestSchema;
const processes: NodeProcess[] = [];
const nodes: TestNode[] = [];

beforeAll(async () => {
  db = await createTestSchema();
  await db.sql`CREATE TABLE ${db.sql(db.schema)}.fence_test (instance text, value int)`;
});

afterAll(async () => {
  await Promise.all(processes.map((node) => node.kill()));
  await Promise.all(nodes.map((node) => node.close()));
  await db.drop();
});

/** A node row whose lease ran out a minute ago, owning `instance` at `epoch`. */
async function seedDeadOwner(node: string, instance: string, epoch: number): Promise<void> {
  const { sql, schema } = db;
  await sql`
    INSERT INTO ${sql(schema)}.nodes (id, address, heartbeat_at, lease_expires_at)
    VALUES (${node}, 'ws://dead.nodes.test:1', now() - interval '2 minutes', now() - interval '1 minute')
    ON CONFLICT (id) DO NOTHING`;
  await sql`
    INSERT INTO ${sql(schema)}.owners (instance, node_id, epoch) VALUES (${instance}, ${node}, ${epoch})`;
}

async function ownerRow(instance: string): Promise<{ node_id: string; epoch: number } | undefined> {
  const { sql, schema } = db;
  const [row] = await sql<{ node_id: string; epoch: string }[]>`
    SELECT node_id, epoch FROM ${sql(schema)}.owners WHERE instance = ${instance}`;
  return row && { node_id: row.node_id, epoch: Number(row.epoch) };
}

describe("ownership", () => {
  it("exactly one owner: concurrent claims from several processes and clients elect one, with a higher epoch", async () => {
    const spawned = await Promise.all(
      ["proc-a", "proc-b", "proc-c"].map((id) =>
        spawnNode(nodeOptions(POSTGRES_URL, db.schema, id)),
      ),
    );
    processes.push(...spawned);
    const local = await Promise.all(
      ["local-a", "local-b", "local-c"].map((id) =>
        startNode(nodeOptions(POSTGRES_URL, db.schema, id)),
      ),
    );
    nodes.push(...local);
    const contenders: { id: string; claim: (instance: string) => Promise<ClaimResult> }[] = [
      ...spawned.map((node, i) => ({
        id: `proc-${"abc"[i]}`,
        claim: async (instance: string) => {
          const reply = await node.send({ cmd: "claim", instance });
          if (reply.ok !== true) throw new Error(`claim failed: ${String(reply.code)}`);
          return reply.result as ClaimResult;
        },
      })),
      ...local.map((node) => ({
        id: node.membership.nodeId,
        claim: (instance: string) => node.ownership.claim(instance),
      })),
    ];

    // Three rounds: an owner whose lease expired, then a released instance, then a new one.
    await seedDeadOwner("ghost", "counter/contested", 41);
    const rounds: { instance: string; before: number }[] = [
      { instance: "counter/contested", before: 41 },
      { instance: "counter/contested", before: 42 },
      { instance: "counter/fresh", before: 0 },
    ];
    for (const [round, { instance, before }] of rounds.entries()) {
      // Each contender asks several times at once, as concurrent connections would.
      const results = await Promise.all(
        contenders.flatMap((contender) =>
          [1, 2, 3].map(async () => ({
            id: contender.id,
            result: await contender.claim(instance),
          })),
        ),
      );
      const winners = new Set(results.filter((r) => r.result.owned).map((r) => r.id));
      expect(winners.size, `round ${round}: one winning node`).toBe(1);
      const [winner] = [...winners] as [string];
      for (const { id, result } of results) {
        if (id === winner) {
          expect(result).toEqual({ owned: true, epoch: before + 1 });
        } else {
          expect(result).toEqual({
            owned: false,
            owner: { nodeId: winner, address: `ws://${winner}.nodes.test:8787`, epoch: before + 1 },
          });
        }
      }
      expect(await ownerRow(instance)).toEqual({ node_id: winner, epoch: before + 1 });
      if (round === 0) {
        // The winner gives it up; the next round's claim must still count the epoch up.
        const process = spawned.find((_, i) => `proc-${"abc"[i]}` === winner);
        if (process) await process.send({ cmd: "release", instance });
        else
          await local
            .find((node) => node.membership.nodeId === winner)!
            .ownership.release(instance);
        expect(await ownerRow(instance)).toEqual({ node_id: "", epoch: before + 1 });
      }
    }
  });

  it("ownerOf names the live owner and its address; an owner whose lease expired is no owner", async () => {
    const node = await startNode(nodeOptions(POSTGRES_URL, db.schema, "lookup"));
    nodes.push(node);
    await seedDeadOwner("ghost-2", "counter/orphan", 5);
    expect(await node.ownership.ownerOf("counter/orphan")).toBeUndefined();
    expect(await node.ownership.ownerOf("counter/never")).toBeUndefined();
    expect(await node.ownership.claim("counter/orphan")).toEqual({ owned: true, epoch: 6 });
    expect(await node.ownership.ownerOf("counter/orphan")).toEqual({
      nodeId: "lookup",
      address: "ws://lookup.nodes.test:8787",
      epoch: 6,
    });
    expect(node.membership.liveNodes().map((n) => n.id)).toContain("lookup");
    expect(node.membership.liveNodes().map((n) => n.id)).not.toContain("ghost-2");
  });

  it("a claim waits for a fenced write in flight, which stays durable; the old epoch is then refused", async () => {
    const node = await startNode(nodeOptions(POSTGRES_URL, db.schema, "successor"));
    nodes.push(node);
    await seedDeadOwner("ghost-3", "counter/handover", 7);
    const { sql, schema } = db;
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => {
      openGate = resolve;
    });
    let inside!: () => void;
    const writing = new Promise<void>((resolve) => {
      inside = resolve;
    });
    const write = fencedWrite(sql, schema, "counter/handover", 7, async (tx) => {
      await tx`INSERT INTO ${tx(schema)}.fence_test (instance, value) VALUES ('counter/handover', 1)`;
      inside();
      await gate;
    });
    await writing;
    let claimed: ClaimResult | undefined;
    const claim = node.ownership.claim("counter/handover").then((result) => {
      claimed = result;
    });
    // The claim's UPDATE must queue behind the write's FOR SHARE lock.
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(claimed).toBeUndefined();
    openGate();
    await write;
    await claim;
    expect(claimed).toEqual({ owned: true, epoch: 8 });
    const rows = await sql`
      SELECT value FROM ${sql(schema)}.fence_test WHERE instance = 'counter/handover'`;
    expect(rows.map((row) => row.value)).toEqual([1]);

    const stale = fencedWrite(sql, schema, "counter/handover", 7, async (tx) => {
      await tx`INSERT INTO ${tx(schema)}.fence_test (instance, value) VALUES ('counter/handover', 2)`;
    });
    await expect(stale).rejects.toBeInstanceOf(FencedError);
    await expect(stale).rejects.toMatchObject({
      code: "ERR_CLUSTER_FENCED",
      epoch: 7,
      currentEpoch: 8,
    });
    await node.ownership.write("counter/handover", (tx) =>
      tx`INSERT INTO ${tx(schema)}.fence_test (instance, value) VALUES ('counter/handover', 3)`.then(
        () => {},
      ),
    );
    const after = await sql`
      SELECT value FROM ${sql(schema)}.fence_test WHERE instance = 'counter/handover' ORDER BY value`;
    expect(after.map((row) => row.value)).toEqual([1, 3]);
  });

  it("a renewal that finds an instance's row held by another node drops it here (lost: taken)", async () => {
    const node = await startNode(nodeOptions(POSTGRES_URL, db.schema, "verifier"));
    nodes.push(node);
    expect(await node.ownership.claim("counter/moved")).toEqual({ owned: true, epoch: 1 });
    const lost = new Promise((resolve) => node.ownership.once("lost", resolve));
    const { sql, schema } = db;
    // As if another node had claimed it in a moment this one could not see.
    await sql`
      UPDATE ${sql(schema)}.owners SET node_id = 'elsewhere', epoch = 2 WHERE instance = 'counter/moved'`;
    expect(await lost).toEqual({ instance: "counter/moved", epoch: 1, reason: "taken" });
    expect(node.ownership.epochOf("counter/moved")).toBeUndefined();
    await expect(node.ownership.write("counter/moved", async () => {})).rejects.toMatchObject({
      code: "ERR_CLUSTER_NOT_OWNER",
    });
  });
});

import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nodeOptions, startNode, type TestNode } from "./nodes.js";
import { createTestSchema, POSTGRES_URL, type TestSchema } from "./postgres.js";

let db: TestSchema;
const live: TestNode[] = [];

beforeAll(async () => {
  db = await createTestSchema();
  await db.sql`CREATE TABLE ${db.sql(db.schema)}.fence_test (instance text, epoch bigint, value int)`;
});

afterAll(async () => {
  await Promise.all(live.map((node) => node.close()));
  await db.drop();
});

type Step =
  | { op: "claim" | "release" | "write"; node: number; instance: number }
  | { op: "restart"; node: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant("claim" as const),
      node: fc.nat(2),
      instance: fc.nat(2),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("write" as const),
      node: fc.nat(2),
      instance: fc.nat(2),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("release" as const),
      node: fc.nat(2),
      instance: fc.nat(2),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("restart" as const), node: fc.nat(2) }) },
);

describe("ownership under random claims, releases, writes and restarts", () => {
  it("epochs only grow, at most one node holds an instance, and every acknowledged write is its owner's", async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 5, maxLength: 25 }), async (steps) => {
        run++;
        const { sql, schema } = db;
        const instances = [0, 1, 2].map((i) => `counter/run-${run}-${i}`);
        let generation = 0;
        const start = (n: number) =>
          startNode(nodeOptions(POSTGRES_URL, schema, `run${run}-n${n}-g${generation++}`));
        const nodes = await Promise.all([0, 1, 2].map(start));
        live.push(...nodes);
        const lastEpoch = [0, 0, 0];
        const acknowledged: { instance: string; epoch: number; value: number }[] = [];
        let value = 0;
        try {
          for (const s of steps) {
            const node = nodes[s.node]!;
            if (s.op === "restart") {
              await node.close();
              live.splice(live.indexOf(node), 1);
              nodes[s.node] = await start(s.node);
              live.push(nodes[s.node]!);
            } else {
              const instance = instances[s.instance]!;
              if (s.op === "claim") {
                const heldBefore = node.ownership.epochOf(instance);
                const result = await node.ownership.claim(instance);
                if (result.owned) {
                  // A new claim counts up from every epoch before; holding it already, the same.
                  expect(result.epoch).toBe(heldBefore ?? lastEpoch[s.instance]! + 1);
                } else {
                  expect(result.owner.nodeId).not.toBe(node.membership.nodeId);
                  const owner = nodes.find((n) => n.membership.nodeId === result.owner.nodeId);
                  expect(owner?.ownership.epochOf(instance)).toBe(result.owner.epoch);
                }
              } else if (s.op === "release") {
                await node.ownership.release(instance);
              } else {
                const epoch = node.ownership.epochOf(instance);
                const v = ++value;
                try {
                  await node.ownership.write(instance, async (tx) => {
                    await tx`INSERT INTO ${tx(schema)}.fence_test VALUES (${instance}, ${epoch ?? -1}, ${v})`;
                  });
                  acknowledged.push({ instance, epoch: epoch!, value: v });
                } catch (error) {
                  // Refused only because this node does not hold it.
                  expect(epoch).toBeUndefined();
                  expect(error).toMatchObject({ code: "ERR_CLUSTER_NOT_OWNER" });
                }
              }
            }
            // After every step: Postgres and the nodes agree on one owner per instance.
            for (const [i, instance] of instances.entries()) {
              const [row] = await sql<{ node_id: string; epoch: string }[]>`
                SELECT node_id, epoch FROM ${sql(schema)}.owners WHERE instance = ${instance}`;
              const epoch = row === undefined ? 0 : Number(row.epoch);
              expect(epoch).toBeGreaterThanOrEqual(lastEpoch[i]!);
              lastEpoch[i] = epoch;
              const holders = nodes.filter((n) => n.ownership.epochOf(instance) !== undefined);
              expect(holders.length).toBeLessThanOrEqual(1);
              if (holders[0] !== undefined) {
                expect(row?.node_id).toBe(holders[0].membership.nodeId);
                expect(holders[0].ownership.epochOf(instance)).toBe(epoch);
              }
            }
          }
          const rows = await sql<{ instance: string; epoch: string; value: number }[]>`
            SELECT instance, epoch, value FROM ${sql(schema)}.fence_test
            WHERE instance = ANY(${instances}) ORDER BY value`;
          expect(
            rows.map((r) => ({ instance: r.instance, epoch: Number(r.epoch), value: r.value })),
          ).toEqual(acknowledged);
        } finally {
          for (const node of nodes) {
            await node.close();
            live.splice(live.indexOf(node), 1);
          }
        }
      }),
      { numRuns: 12 },
    );
  }, 120_000);
});

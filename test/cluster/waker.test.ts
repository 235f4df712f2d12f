import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Waker } from "../../src/cluster/waker.js";
import { WakeupWriter, writeWakeup } from "../../src/cluster/wakeups.js";
import { waitFor } from "../helpers/wait.js";
import { nodeOptions, startNode, type TestNode } from "./nodes.js";
import { createTestSchema, POSTGRES_URL, type TestSchema } from "./postgres.js";

let db: TestSchema;
const closers: Array<() => Promise<void>> = [];

beforeEach(async () => {
  db = await createTestSchema();
});

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  await db.drop();
});

interface Wake {
  node: string;
  instance: string;
  at: number;
}

/** A node in this process with a waker that records what it wakes in `wakes`. */
async function wakerNode(
  id: string,
  scanMs: number,
  wakes: Wake[],
  batch?: number,
): Promise<TestNode & { waker: Waker }> {
  const node = await startNode(nodeOptions(POSTGRES_URL, db.schema, id));
  const waker = await Waker.start(
    { postgres: POSTGRES_URL, schema: db.schema, scanMs, ...(batch !== undefined && { batch }) },
    node.membership,
    node.ownership,
    async (agent, name) => {
      wakes.push({ node: id, instance: `${agent}/${name}`, at: Date.now() });
    },
  );
  const close = async () => {
    await waker.close();
    await node.close();
  };
  closers.push(close);
  return { ...node, waker, close };
}

/** An instance nobody owns (released), due at `due`, written with no notification at all. */
async function releasedAndDue(instance: string, due: number): Promise<void> {
  const { sql, schema } = db;
  await sql`INSERT INTO ${sql(schema)}.owners (instance, node_id, epoch) VALUES (${instance}, '', 1)`;
  await sql`INSERT INTO ${sql(schema)}.wakeups (instance, next_due_at) VALUES (${instance}, ${due})`;
}

describe("waker", () => {
  it("a missed NOTIFY is caught up by the periodic scan", async () => {
    const wakes: Wake[] = [];
    const scanning = await wakerNode("scanning", 1_000, wakes);
    await wakerNode("listening", 3_600_000, wakes);
    const writtenAt = Date.now();
    await releasedAndDue("ticker/missed", writtenAt - 1_000);
    await waitFor(() => wakes.length > 0, "a waker to wake the instance", 10_000);
    console.log(
      `missed notification caught up after ${wakes[0]!.at - writtenAt} ms (scan 1000 ms)`,
    );
    // Only the node that scans periodically can have seen it.
    expect(wakes).toEqual([{ node: "scanning", instance: "ticker/missed", at: wakes[0]!.at }]);
    expect(wakes[0]!.at - writtenAt).toBeLessThan(5_000);

    // The notification path, for contrast: an hour from its next scan, a notified row is
    // taken at once.
    await scanning.close();
    const { sql, schema } = db;
    await sql`INSERT INTO ${sql(schema)}.owners (instance, node_id, epoch) VALUES ('ticker/notified', '', 1)`;
    const notifiedAt = Date.now();
    await sql.begin((tx) => writeWakeup(tx, schema, "ticker/notified", notifiedAt - 1_000));
    await waitFor(() => wakes.length === 2, "the listening waker to wake the notified instance");
    expect(wakes[1]).toMatchObject({ node: "listening", instance: "ticker/notified" });
    expect(wakes[1]!.at - notifiedAt).toBeLessThan(2_000);
  });

  it("of three wakers scanning at once, each due instance is claimed and woken by exactly one", async () => {
    const wakes: Wake[] = [];
    const nodes = await Promise.all(
      // Batches of 5: each scan takes a few rows and scans again at once.
      ["n1", "n2", "n3"].map((id) => wakerNode(id, 3_600_000, wakes, 5)),
    );
    const instances = Array.from({ length: 30 }, (_, i) => `ticker/crowd-${i}`);
    for (const instance of instances) await releasedAndDue(instance, Date.now() - 1_000);
    for (const node of nodes) node.waker.scanSoon();
    await waitFor(() => wakes.length >= instances.length, "every instance to be woken", 15_000);
    // Wait a little for a second wake of any of them.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(wakes.map((wake) => wake.instance).sort()).toEqual([...instances].sort());
    const { sql, schema } = db;
    const owners = await sql<{ instance: string; node_id: string; epoch: string }[]>`
      SELECT instance, node_id, epoch FROM ${sql(schema)}.owners`;
    for (const wake of wakes) {
      const row = owners.find((owner) => owner.instance === wake.instance);
      expect(row).toMatchObject({ node_id: wake.node, epoch: "2" });
    }
    const perNode = ["n1", "n2", "n3"].map((id) => wakes.filter((w) => w.node === id).length);
    console.log(`30 due instances woken once each; per node ${perNode.join(" / ")}`);
  });

  it("a released instance is woken at its due time, not at its old owner's lease end", async () => {
    const wakes: Wake[] = [];
    const owner = await startNode(nodeOptions(POSTGRES_URL, db.schema, "owner"));
    closers.push(() => owner.close());
    const watcher = await wakerNode("watcher", 3_600_000, wakes);
    const instance = "ticker/evicted";
    expect(await owner.ownership.claim(instance)).toEqual({ owned: true, epoch: 1 });
    const due = Date.now() + 500;
    await new WakeupWriter(owner.ownership, db.schema).set(instance, due);
    await owner.ownership.release(instance);
    await watcher.waker.released(instance);
    await waitFor(() => wakes.length === 1, "the released instance to be woken", 10_000);
    console.log(`released instance woken ${wakes[0]!.at - due} ms after its due time`);
    expect(wakes[0]).toMatchObject({ node: "watcher", instance });
    // Its owner is alive, with at least 2.7 s of lease left at any moment (lease 3 s,
    // renewed every 300 ms): a wake this early was not waiting for the lease.
    expect(wakes[0]!.at).toBeGreaterThanOrEqual(due - 100);
    expect(wakes[0]!.at - due).toBeLessThan(1_000);
  });
});

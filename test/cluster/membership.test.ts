import { type AddressInfo, createServer } from "node:net";
import { performance } from "node:perf_hooks";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Membership } from "../../src/cluster/membership.js";
import type { LostReason } from "../../src/cluster/ownership.js";
import { waitFor } from "../helpers/wait.js";
import { nodeOptions, startNode, type TestNode } from "./nodes.js";
import {
  createTestSchema,
  POSTGRES_TARGET,
  POSTGRES_URL,
  type TestSchema,
  viaPort,
} from "./postgres.js";
import { startTcpProxy, type TcpProxy } from "./tcp-proxy.js";

let db: TestSchema;
let proxy: TcpProxy | undefined;
let node: TestNode | undefined;

beforeAll(async () => {
  db = await createTestSchema();
});

afterEach(async () => {
  await node?.close();
  await proxy?.close();
  node = undefined;
  proxy = undefined;
});

afterAll(async () => {
  await db.drop();
});

/** Milliseconds left on `id`'s lease by Postgres's clock (negative once expired). */
async function leaseLeftMs(id: string): Promise<number> {
  const { sql, schema } = db;
  const [row] = await sql<{ left: number }[]>`
    SELECT (extract(epoch FROM lease_expires_at - now()) * 1000)::float8 AS left
    FROM ${sql(schema)}.nodes WHERE id = ${id}`;
  return row!.left;
}

describe("membership", () => {
  it("registers with its address and renews its lease by Postgres's clock", async () => {
    node = await startNode(nodeOptions(POSTGRES_URL, db.schema, "renewing"));
    const first = await leaseLeftMs("renewing");
    expect(first).toBeGreaterThan(1_000);
    expect(first).toBeLessThanOrEqual(3_000);
    const { sql, schema } = db;
    const [before] = await sql`SELECT heartbeat_at FROM ${sql(schema)}.nodes WHERE id = 'renewing'`;
    // Renewed well past the first lease: it would have expired without heartbeats.
    await new Promise((resolve) => setTimeout(resolve, 3_500));
    expect(await leaseLeftMs("renewing")).toBeGreaterThan(1_000);
    const [after] = await sql`
      SELECT heartbeat_at, address FROM ${sql(schema)}.nodes WHERE id = 'renewing'`;
    expect(after!.heartbeat_at.getTime()).toBeGreaterThan(before!.heartbeat_at.getTime());
    expect(after!.address).toBe("ws://renewing.nodes.test:8787");
    expect(node.membership.serving).toBe(true);
  });

  for (const mode of ["refuse", "blackhole"] as const) {
    it(`self-fencing (${mode === "refuse" ? "Postgres refuses connections" : "silent partition"}): stops serving before its lease can expire, then resumes by itself`, async () => {
      proxy = await startTcpProxy(POSTGRES_TARGET);
      const id = `fencing-${mode}`;
      const instance = `counter/fenced-${mode}`;
      node = await startNode(nodeOptions(viaPort(POSTGRES_URL, proxy.port), db.schema, id));
      const { membership, ownership } = node;
      expect(await ownership.claim(instance)).toEqual({ owned: true, epoch: 1 });
      const lost: { instance: string; reason: LostReason }[] = [];
      ownership.on("lost", ({ instance, reason }) => lost.push({ instance, reason }));
      let leftAtFence: Promise<number> | undefined;
      let fencedAt = 0;
      membership.on("fenced", () => {
        fencedAt = performance.now();
        // Asked straight away, bypassing the proxy: how much of the lease was left.
        leftAtFence = leaseLeftMs(id);
      });
      let servingAgain = 0;
      membership.on("serving", () => {
        servingAgain = performance.now();
      });

      const cutAt = performance.now();
      proxy.cut(mode);
      await waitFor(
        () => leftAtFence !== undefined,
        "the node to declare itself not serving",
        10_000,
      );
      const left = await leftAtFence!;
      console.log(
        `${mode}: not serving ${Math.round(fencedAt - cutAt)} ms after the cut, ` +
          `with ${Math.round(left)} ms of lease left by Postgres's clock`,
      );
      expect(left).toBeGreaterThan(0);
      expect(membership.serving).toBe(false);
      expect(lost).toEqual([{ instance, reason: "fenced" }]);
      expect(ownership.epochOf(instance)).toBeUndefined();
      await expect(ownership.write(instance, async () => {})).rejects.toMatchObject({
        code: "ERR_CLUSTER_NOT_SERVING",
      });
      await expect(ownership.claim(instance)).rejects.toMatchObject({
        code: "ERR_CLUSTER_NOT_SERVING",
      });

      const restoredAt = performance.now();
      proxy.restore();
      await waitFor(() => membership.serving, "the node to serve again", 20_000);
      console.log(
        `${mode}: serving again ${Math.round(servingAgain - restoredAt)} ms after the restore`,
      );
      expect(await leaseLeftMs(id)).toBeGreaterThan(1_000);
      // Serving again means claiming again: a new epoch fences anything written under the old.
      expect(await ownership.claim(instance)).toEqual({ owned: true, epoch: 2 });
    });
  }

  it("a node that closes gives its lease up at once: another node claims its instance without waiting", async () => {
    const leaving = await startNode(nodeOptions(POSTGRES_URL, db.schema, "leaving"));
    expect(await leaving.ownership.claim("counter/handed-over")).toEqual({ owned: true, epoch: 1 });
    node = await startNode(nodeOptions(POSTGRES_URL, db.schema, "staying"));
    expect(await node.ownership.claim("counter/handed-over")).toMatchObject({
      owned: false,
      owner: { nodeId: "leaving" },
    });
    await leaving.close();
    expect(await leaseLeftMs("leaving")).toBeLessThanOrEqual(0);
    expect(await node.ownership.claim("counter/handed-over")).toEqual({ owned: true, epoch: 2 });
  });

  it("start rejects with ERR_CLUSTER_UNREACHABLE when Postgres cannot be reached, and registers nothing", async () => {
    // A port nothing listens on (refused at once), and a proxy that drops every connection.
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    proxy = await startTcpProxy(POSTGRES_TARGET);
    proxy.cut("refuse");
    for (const [id, port] of [
      ["unreachable-refused", closedPort],
      ["unreachable-dropped", proxy.port],
    ] as const) {
      const started = Membership.start(nodeOptions(viaPort(POSTGRES_URL, port), db.schema, id));
      await expect(started).rejects.toMatchObject({ code: "ERR_CLUSTER_UNREACHABLE" });
      await expect(started).rejects.toThrow(
        /^could not register this node in Postgres \(cluster\.postgres\): /,
      );
      const { sql, schema } = db;
      expect(await sql`SELECT id FROM ${sql(schema)}.nodes WHERE id = ${id}`).toHaveLength(0);
    }
  });
});

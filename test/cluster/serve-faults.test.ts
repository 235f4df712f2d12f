import { afterEach, describe, expect, it } from "vitest";
import { waitFor, within } from "../helpers/wait.js";
import { type Frame, isFrame, type RawClient, refused } from "../helpers/ws-client.js";
import { type TestNode, testCluster } from "./cluster-nodes.js";
import { POSTGRES_TARGET, POSTGRES_URL, viaPort } from "./postgres.js";
import { startTcpProxy, type TcpProxy } from "./tcp-proxy.js";

/**
 * `serve({ cluster })` when things go wrong: an owner paused past its lease, PostgreSQL out
 * of reach, a whole-cluster restart, and a connect storm on a new instance. Real node
 * processes (lease 3 s, heartbeat 500 ms, margin 1 s) on one schema of the machine's
 * PostgreSQL.
 */

const cluster = testCluster();
const { node, token, url, open } = cluster;
const proxies: TcpProxy[] = [];

/**
 * Connect to `name` through `at` and post `text` until a post is acknowledged (the instance
 * is serving again); resolves with the client. Every attempt is a new client, as a real
 * one reconnecting with backoff.
 */
async function reconnectAndPost(
  at: TestNode,
  name: string,
  text: string,
  timeoutMs: number,
): Promise<RawClient> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const client = await within(open(at, name), 10_000, `a connection to ${name}`);
      const answer = await client.call("post", [text], 10_000);
      if (answer.success === true) return client;
      last = new Error(`post answered ${JSON.stringify(answer)}`);
      client.terminate();
    } catch (error) {
      last = error;
      // Refused 1013 or closed while the instance moves: try again.
    }
    if (Date.now() > deadline) {
      const { exitCode, signalCode } = at.child;
      const state =
        exitCode === null && signalCode === null
          ? "the node is running"
          : `the node exited (${signalCode ?? `code ${exitCode}`})`;
      throw new Error(`${name} did not serve again through ${at.id} (${state}): ${String(last)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Post `count` texts and return those acknowledged (all of them, or the test fails). */
async function postAll(client: RawClient, prefix: string, count: number): Promise<string[]> {
  const acknowledged: string[] = [];
  for (let i = 0; i < count; i++) {
    const text = `${prefix}${i}`;
    await client.rpc("post", [text], 10_000);
    acknowledged.push(text);
  }
  return acknowledged;
}

// Each test runs its own nodes; they go when it ends, so the next one has the cores.
afterEach(async () => {
  await cluster.stop();
  for (const proxy of proxies.splice(0)) await proxy.close();
});

describe("zombie owner", () => {
  it("an owner paused past its lease acknowledges nothing after it wakes, closes its sockets 1013, and no acknowledged write is lost", async () => {
    const owner = await node("zombie-owner");
    const successor = await node("zombie-successor");
    const onOwner = await open(owner, "zombie");
    expect(await onOwner.rpc("where")).toBe("zombie-owner");
    const before = await postAll(onOwner, "before", 10);

    owner.child.kill("SIGSTOP");
    const stoppedAt = Date.now();
    // Postgres's clock decides when the paused owner's lease is over.
    const { sql, schema } = cluster.schema;
    await waitFor(
      async () => {
        const [row] = await sql`
          SELECT lease_expires_at < now() AS expired
          FROM ${sql(schema)}.nodes WHERE id = 'zombie-owner'`;
        return row?.expired === true;
      },
      "the paused owner's lease to expire",
      20_000,
    );
    // A client reconnecting through another node lands on the instance there, and writes.
    const moved = await reconnectAndPost(successor, "zombie", "after0", 20_000);
    const takenOverMs = Date.now() - stoppedAt;
    expect(await moved.rpc("where")).toBe("zombie-successor");
    const after = ["after0", ...(await postAll(moved, "after-more", 5))];
    const [row] = await sql<{ node_id: string; epoch: string }[]>`
      SELECT node_id, epoch FROM ${sql(schema)}.owners WHERE instance = 'room/zombie'`;
    expect(row).toEqual({ node_id: "zombie-successor", epoch: "2" });

    // Sent while the old owner is stopped: it reads the write the moment it runs again.
    const answers: Frame[] = [];
    onOwner.onMessage((m) => {
      if (typeof m === "object" && !Buffer.isBuffer(m) && m.type === "rpc") answers.push(m);
    });
    const zombieWrite = onOwner.sendCall("post", ["zombie-write"]);
    owner.child.kill("SIGCONT");
    const pausedMs = Date.now() - stoppedAt;
    const closed = await onOwner.closed;
    expect(closed.code).toBe(1013);
    expect(answers.filter((a) => a.id === zombieWrite && a.success === true)).toEqual([]);
    console.log(
      `zombie: paused ${pausedMs} ms; another node served the instance ${takenOverMs} ms after the pause; ` +
        `the old owner closed its client 1013 (${closed.reason}) without acknowledging its write`,
    );

    // Every acknowledged write is on the new owner, and the zombie's write is not.
    const texts = await moved.rpc<string[]>("texts");
    for (const text of [...before, ...after]) expect(texts).toContain(text);
    expect(texts).not.toContain("zombie-write");
    // The old owner, awake, routes to the new one instead of serving a stale copy.
    const again = await reconnectAndPost(owner, "zombie", "via-old-owner", 20_000);
    expect(await again.rpc("where")).toBe("zombie-successor");
    expect(await again.rpc<string[]>("texts")).toEqual([...before, ...after, "via-old-owner"]);
  }, 90_000);
});

describe("PostgreSQL out of reach", () => {
  const cuts = [
    { mode: "refuse", how: "connections refused" },
    { mode: "blackhole", how: "a silent partition" },
  ] as const;
  for (const { mode, how } of cuts) {
    it(`with PostgreSQL cut off (${how}), nodes fail closed: no write is acknowledged, clients get 1013; service resumes by itself with every earlier write`, async () => {
      const proxy = await startTcpProxy(POSTGRES_TARGET);
      proxies.push(proxy);
      const postgres = viaPort(POSTGRES_URL, proxy.port);
      const a = await node(`pg-a-${mode}`, { postgres });
      const b = await node(`pg-b-${mode}`, { postgres });
      // One instance that writes during the cut, one whose clients only watch.
      const writer = await open(a, `pg-writes-${mode}`);
      expect(await writer.rpc("where")).toBe(`pg-a-${mode}`);
      const carried = await open(b, `pg-writes-${mode}`, "bob");
      expect(await carried.rpc("where")).toBe(`pg-a-${mode}`);
      const watcher = await open(a, `pg-idle-${mode}`, "carol");
      expect(await watcher.rpc("where")).toBe(`pg-a-${mode}`);
      const before = [
        ...(await postAll(writer, "before-a", 5)),
        ...(await postAll(carried, "before-b", 5)),
      ];

      proxy.cut(mode);
      const cutAt = Date.now();
      const closedAt = new Map<RawClient, number>();
      for (const client of [writer, carried, watcher]) {
        void client.closed.then(() => closedAt.set(client, Date.now() - cutAt));
      }
      // Writes keep coming from both clients while PostgreSQL is away: none may succeed.
      const duringCut: Array<Promise<Frame | undefined>> = [];
      for (const client of [writer, carried]) {
        for (let i = 0; i < 3; i++) {
          duringCut.push(client.call("post", [`cut-${i}`], 30_000).catch(() => undefined));
        }
      }
      const closes = await Promise.all([writer.closed, carried.closed, watcher.closed]);
      expect(closes.map((c) => c.code)).toEqual([1013, 1013, 1013]);
      for (const answer of await Promise.all(duringCut)) expect(answer?.success).not.toBe(true);
      // New clients are refused 1013 on both nodes while the cut lasts.
      await new Promise((resolve) => setTimeout(resolve, 3_500));
      for (const at of [a, b]) {
        const t = await token("dave", `pg-writes-${mode}`);
        expect((await refused(url(at, `pg-writes-${mode}`, t))).code).toBe(1013);
      }
      const cutMs = Date.now() - cutAt;

      proxy.restore();
      const restoredAt = Date.now();
      const back = await reconnectAndPost(b, `pg-writes-${mode}`, "after", 30_000);
      const recoveredMs = Date.now() - restoredAt;
      const idleBack = await reconnectAndPost(a, `pg-idle-${mode}`, "idle-after", 30_000);
      expect(await idleBack.rpc<string[]>("texts")).toEqual(["idle-after"]);
      console.log(
        `PostgreSQL cut (${how}) for ${cutMs} ms: writing instance closed 1013 after ${closedAt.get(writer)} ms ` +
          `(carried client ${closedAt.get(carried)} ms), idle instance (node fenced) after ` +
          `${closedAt.get(watcher)} ms (${closes[2]!.reason}); served a write again ${recoveredMs} ms after PostgreSQL was back`,
      );
      const texts = await back.rpc<string[]>("texts");
      for (const text of [...before, "after"]) expect(texts).toContain(text);
      // Nothing was written on the idle instance: only self-fencing (2 s after the last
      // renewal) closed its clients; generous, since a loaded machine delays the timers.
      expect(closedAt.get(watcher)).toBeLessThan(9_000);
    }, 120_000);
  }
});

describe("an instance let go while a call still runs", () => {
  it("a client that connects while the instance drains reaches its next activation, not the one being let go (which would cut it off, 1006)", async () => {
    const a = await node("drain-a");
    const writer = await open(a, "drain");
    await writer.rpc("post", ["before"]);
    // A call that outlives the drop: the drain waits for it (1 s at most).
    writer.sendCall("slowPost", ["slow", 3_000]);
    await writer.waitFor((m) => isFrame(m) && m.type === "running", "the slow call to run");

    // As if another node had claimed the instance: at its next renewal the node finds a
    // newer epoch than its own, lets the instance go and closes its clients.
    const { sql, schema } = cluster.schema;
    await sql`
      UPDATE ${sql(schema)}.owners SET epoch = epoch + 1 WHERE instance = 'room/drain'`;
    expect(await writer.closed).toMatchObject({ code: 1013, reason: "agent moved" });

    // Straight away, while the old activation still drains: the newcomer is served by the
    // next one, and stays connected past the drain.
    const newcomer = await open(a, "drain", "bob");
    expect(await newcomer.rpc("post", ["after"], 10_000)).toBe(2);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(await newcomer.rpc<string[]>("texts")).toEqual(["before", "after"]);
  }, 60_000);
});

describe("shared auth state", () => {
  it("a ticket spent on A is refused on B, and revocations and spent tickets survive a restart of the whole cluster", async () => {
    const a = await node("tickets-a", { tickets: true });
    const b = await node("tickets-b", { tickets: true });
    const ticket = await token("alice", "tickets");
    const first = await cluster.connect(url(a, "tickets", ticket));
    expect(await first.rpc("whoami")).toBe("alice");
    // Straight after, through the other node: no time for anything to propagate.
    const replayed = await refused(url(b, "tickets", ticket));
    expect(replayed.code).toBe(4001);
    expect(replayed.received).toEqual([]);

    const mallory = await open(b, "tickets", "mallory");
    // Unused until after the restart. A subject's revocation refuses the tokens issued up to
    // it (plus the clock tolerance, 5 s), not those issued later: tokens minted after a
    // restart slower than that would rightly be accepted.
    const revokedTokens = [await token("mallory", "tickets"), await token("mallory", "tickets")];
    await a.revoke({ sub: "mallory" });
    expect((await mallory.closed).code).toBe(4009);

    // The whole cluster goes down and comes back, on fresh data directories: what it
    // remembers is in PostgreSQL.
    await Promise.all([a.kill("SIGTERM"), b.kill("SIGTERM")]);
    const a2 = await node("tickets-a2", { tickets: true });
    const b2 = await node("tickets-b2", { tickets: true });
    for (const [i, at] of [a2, b2].entries()) {
      expect((await refused(url(at, "tickets", ticket))).code).toBe(4001);
      const revoked = await refused(url(at, "tickets", revokedTokens[i]!));
      expect(revoked.code).toBe(4009);
      expect(revoked.received).toEqual([]);
      // Nothing else is refused: a fresh ticket for someone else connects.
      const fresh = await open(at, "tickets", "bob");
      expect(await fresh.rpc("whoami")).toBe("bob");
    }
  }, 90_000);
});

describe("connect storm", () => {
  it("exactly one owner: 50 clients connecting at once over 3 nodes to a new instance all reach the same node", async () => {
    const three = await Promise.all([node("storm-a"), node("storm-b"), node("storm-c")]);
    const started = Date.now();
    const storm = await Promise.all(
      Array.from({ length: 50 }, (_, i) => open(three[i % 3]!, "storm-new", `user-${i}`)),
    );
    const where = await Promise.all(storm.map((client) => client.rpc<string>("where", [], 20_000)));
    console.log(`connect storm: 50 clients over 3 nodes admitted in ${Date.now() - started} ms`);
    const owners = new Set(where);
    expect(owners.size).toBe(1);
    const { sql, schema } = cluster.schema;
    const rows = await sql<{ node_id: string; epoch: string }[]>`
      SELECT node_id, epoch FROM ${sql(schema)}.owners WHERE instance = 'room/storm-new'`;
    // One claim won, once: the first epoch, held by the node every client reached.
    expect(rows).toEqual([{ node_id: [...owners][0], epoch: "1" }]);
    // Every client is on that one instance: one post is seen by all of them.
    await storm[0]!.rpc("post", ["hello all"]);
    await Promise.all(
      storm.map((client) =>
        client.waitFor(
          (m) => typeof m === "object" && (m as { text?: string }).text === "hello all",
          "the broadcast",
          20_000,
        ),
      ),
    );
  }, 90_000);
});

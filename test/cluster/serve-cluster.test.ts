import { AgentClient } from "agents/client";
import { beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { waitFor } from "../helpers/wait.js";
import { type RawClient, refused } from "../helpers/ws-client.js";
import { type TestNode, testCluster } from "./cluster-nodes.js";

/**
 * `serve({ cluster })` end to end: three node processes on one PostgreSQL schema. Any node
 * accepts any client and carries it to the instance's one owner; revocation acts on the
 * whole cluster; when the owner dies, the instance comes back on another node with every
 * write its clients were told about.
 */

const cluster = testCluster();
const { node, token, open } = cluster;

describe("three nodes, one owner per instance", () => {
  let a: TestNode;
  let b: TestNode;
  let c: TestNode;

  beforeAll(async () => {
    [a, b, c] = await Promise.all([node("node-a"), node("node-b"), node("node-c")]);
  }, 60_000);

  it("carries clients on A and C to the instance B owns: RPC, state, broadcasts, streaming, user messages", async () => {
    const onB = await open(b, "lobby");
    expect(await onB.rpc("where")).toBe("node-b");
    const onA = await open(a, "lobby", "bob");
    const onC = await open(c, "lobby", "carol");
    // One instance, on B, whichever node a client landed on.
    expect(await onA.rpc("where")).toBe("node-b");
    expect(await onC.rpc("where")).toBe("node-b");
    expect(await onA.rpc("whoami")).toBe("bob");
    expect(await onA.rpc("post", ["from a"])).toBe(1);
    expect(await onC.rpc("post", ["from c"])).toBe(2);
    for (const client of [onA, onB, onC]) {
      await client.waitFor(
        (m) => typeof m === "object" && (m as { state?: { posts?: number } }).state?.posts === 2,
        "the state after both posts",
      );
      await client.waitFor(
        (m) => typeof m === "object" && (m as { text?: string }).text === "from c",
        "the broadcast",
      );
    }
    expect(await onB.rpc("texts")).toEqual(["from a", "from c"]);
    const id = onC.sendCall("countdown", [3]);
    const done = await onC.answer(id);
    expect(done).toMatchObject({ success: true, result: "liftoff" });
    const chunks = onC
      .frames("rpc")
      .filter((f) => f.id === id && f.done === false)
      .map((f) => f.result);
    expect(chunks).toEqual([3, 2, 1]);
    onA.send("hello");
    await onA.waitFor((m) => m === "echo:hello", "the echo from onMessage");
  });

  it("relays HTTP to the owner from any node", async () => {
    const t = await token("alice", "lobby");
    const response = await fetch(
      `http://127.0.0.1:${c.port}/agents/room/lobby/sub/path?token=${t}`,
    );
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({
      node: "node-b",
      path: "/agents/room/lobby/sub/path",
    });
    const refusedHttp = await fetch(`http://127.0.0.1:${a.port}/agents/room/lobby?token=nope`);
    expect(refusedHttp.status).toBe(401);
  });

  it("an address the server's route maps (basePath) reaches the owner from any node, WebSocket and HTTP", async () => {
    const t = await token("erin", "lobby");
    // B owns lobby; A and C route `/lobby-of/lobby` to it and carry the client there.
    const client = new AgentClient<unknown, { posts: number }>({
      agent: "room",
      basePath: "lobby-of/lobby",
      host: `127.0.0.1:${c.port}`,
      query: { token: t },
      // biome-ignore lint/suspicious/noExplicitAny: the official client takes a WebSocket class.
      WebSocket: WebSocket as any,
    });
    try {
      await client.ready;
      expect(client.name).toBe("lobby");
      expect(await client.call("where")).toBe("node-b");
      expect(await client.call("whoami")).toBe("erin");
    } finally {
      client.close();
    }
    const response = await fetch(`http://127.0.0.1:${a.port}/lobby-of/lobby/inbox?token=${t}`);
    expect(await response.json()).toMatchObject({ node: "node-b", path: "/lobby-of/lobby/inbox" });
    // The route picks the instance; the token still has to be for it.
    const other = await token("erin", "elsewhere");
    const closed = await refused(`ws://127.0.0.1:${a.port}/lobby-of/lobby?token=${other}`);
    expect(closed.code).toBe(4003);
  });

  it("the official agents client works through any node", async () => {
    const t = await token("dave", "lobby");
    const client = new AgentClient<unknown, { posts: number }>({
      agent: "room",
      name: "lobby",
      host: `127.0.0.1:${a.port}`,
      query: { token: t },
      // biome-ignore lint/suspicious/noExplicitAny: the official client takes a WebSocket class.
      WebSocket: WebSocket as any,
    });
    try {
      await client.ready;
      expect(await client.call("where")).toBe("node-b");
    } finally {
      client.close();
    }
  });

  it("getAgentByName from an agent on one node calls an instance another node owns", async () => {
    const far = await open(c, "far", "carol");
    expect(await far.rpc("where")).toBe("node-c");
    const lobby = await open(a, "lobby", "bob");
    expect(await lobby.rpc("where")).toBe("node-b");
    // Server code on B asks for "far", which C owns: the call is answered there.
    expect(await lobby.rpc("whereIs", ["far"])).toBe("node-c");
    expect(await lobby.rpc("postTo", ["far", "via b"])).toBe(1);
    expect(await far.rpc("texts")).toEqual(["via b"]);
    const failed = await lobby.call("callOn", ["far", "nope"]);
    expect(failed).toMatchObject({ success: false, error: "Method nope is not callable" });
  });

  it("destroy() deletes the durable copy too: the next access, on any node, starts fresh", async () => {
    const first = await open(b, "doomed");
    expect(await first.rpc("post", ["gone soon"])).toBe(1);
    first.sendCall("wipe");
    expect((await first.closed).code).toBe(1001);
    // Wait for the instance to be let go, then reach it through another node.
    let again: RawClient | undefined;
    for (let i = 0; i < 50 && again === undefined; i++) {
      const client = await open(c, "doomed", "carol");
      const texts = await client.rpc<string[]>("texts");
      if (texts.length === 0) again = client;
      else await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(again).toBeDefined();
    expect(again!.frames("cf_agent_state")[0]).toMatchObject({ state: { posts: 0 } });
  });

  it("revoke() on A closes the subject's sockets on B and C with 4009 within a second, and every node refuses it", async () => {
    const onB = await open(b, "revoke-room", "mallory");
    const onC = await open(c, "revoke-room", "mallory");
    const bystander = await open(c, "revoke-room", "alice");
    const started = Date.now();
    await a.revoke({ sub: "mallory" });
    const [closedB, closedC] = await Promise.all([onB.closed, onC.closed]);
    const ms = Date.now() - started;
    console.log(`revocation on A closed sockets on B and C after ${ms} ms`);
    expect(closedB.code).toBe(4009);
    expect(closedC.code).toBe(4009);
    expect(ms).toBeLessThan(1_000);
    for (const at of [a, b, c]) {
      const t = await token("mallory", "revoke-room");
      const again = await refused(`ws://127.0.0.1:${at.port}/agents/room/revoke-room?token=${t}`);
      expect(again.code).toBe(4009);
    }
    expect(await bystander.rpc("whoami")).toBe("alice");
  });
});

describe("the owner dies", () => {
  it("kill -9 of the owner during a write storm: the instance answers on another node with every acknowledged write", async () => {
    const owner = await node("storm-owner");
    const other = await node("storm-other");
    const writer = await open(owner, "storm");
    expect(await writer.rpc("where")).toBe("storm-owner");
    const watcher = await open(other, "storm", "bob");
    const acknowledged: string[] = [];
    let stop = false;
    const storm = (async () => {
      for (let i = 0; !stop; i++) {
        const text = `w${i}`;
        const answer = await writer.call("post", [text]).catch(() => undefined);
        if (answer?.success === true) acknowledged.push(text);
        else break;
      }
    })();
    await waitFor(() => acknowledged.length >= 30, "30 acknowledged writes", 20_000);
    await owner.kill("SIGKILL");
    const killedAt = Date.now();
    stop = true;
    await storm;
    // The watcher's edge closes it 1013 when the owner's link dies; it reconnects.
    const closed = await watcher.closed;
    expect(closed.code).toBe(1013);
    let back: RawClient | undefined;
    while (back === undefined) {
      try {
        back = await open(other, "storm", "bob");
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 100));
        if (Date.now() - killedAt > 15_000) throw new Error("the instance did not come back");
      }
    }
    const seconds = (Date.now() - killedAt) / 1000;
    console.log(`instance back on another node ${seconds.toFixed(2)} s after kill -9 of its owner`);
    expect(await back.rpc("where")).toBe("storm-other");
    const texts = await back.rpc<string[]>("texts");
    for (const text of acknowledged) expect(texts).toContain(text);
    expect(seconds).toBeLessThan(10);
  }, 60_000);

  it("a recurring schedule goes on after its owner is killed, woken on another node with no client, never twice for one due time", async () => {
    // Every node's waker starts due instances whose owner is gone: only these two may run.
    await Promise.all(cluster.nodes.map((n) => n.kill("SIGKILL")));
    const owner = await node("tick-owner");
    const other = await node("tick-other");
    const first = await open(owner, "ticker");
    expect(await first.rpc("where")).toBe("tick-owner");
    await first.rpc("startTicking", [1]);
    await waitFor(
      async () =>
        (await first.rpc<string[]>("texts")).filter((t) => t.startsWith("tick:")).length >= 2,
      "two ticks on the first owner",
      15_000,
    );
    first.ws.terminate();
    await owner.kill("SIGKILL");
    const killedAt = Date.now();
    // Nobody connects for a while: the other node's waker must start the instance itself.
    await new Promise((resolve) => setTimeout(resolve, 9_000));
    const later = await open(other, "ticker");
    // Any live node may have won the wake (the other suite's nodes share the schema).
    const survivor = await later.rpc<string>("where");
    expect(survivor).not.toBe("tick-owner");
    const ticks = (await later.rpc<string[]>("texts")).filter((t) => t.startsWith("tick:"));
    const onOther = ticks.filter((t) => !t.endsWith(":tick-owner"));
    console.log(
      `${onOther.length} ticks ran on the survivor in the ${Math.round((Date.now() - killedAt) / 1000)} s after the kill`,
    );
    expect(onOther.length).toBeGreaterThanOrEqual(2);
    const dueTimes = ticks.map((t) => t.split(":")[1]);
    expect(new Set(dueTimes).size).toBe(dueTimes.length);
  }, 60_000);
});

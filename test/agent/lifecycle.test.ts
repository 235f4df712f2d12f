import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Counter, FlakyStart, SlowStart, SlowStreamWriter } from "../fixtures/agents.js";
import { httpUrl, startServer, type TestServer, wsUrl } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";
import { connect, RawClient, refused } from "../helpers/ws-client.js";

let server: TestServer | undefined;
const clients: RawClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await server?.stop();
  server = undefined;
});

function open(url: string): Promise<RawClient> {
  const client = new RawClient(url);
  clients.push(client);
  return client.opened.then(() => client);
}

describe("instance lifecycle", () => {
  it("starts exactly one instance per (class, name) when many clients connect at once", async () => {
    server = await startServer({ SlowStart, Counter });
    const url = wsUrl(server, "/agents/slow-start/crowd");
    const crowd = await Promise.all(Array.from({ length: 25 }, () => open(url)));
    // HTTP to the same instance, while it may still be starting, shares it too.
    const [other] = await Promise.all([
      open(wsUrl(server, "/agents/slow-start/other")),
      fetch(httpUrl(server, "/agents/slow-start/crowd")).then((r) => r.json()),
    ]);
    expect(SlowStart.constructed.get("crowd")).toBe(1);
    expect(SlowStart.started.get("crowd")).toBe(1);
    expect(SlowStart.started.get("other")).toBe(1);
    const events = await crowd[0]!.rpc<string[]>("log");
    expect(events.filter((e) => e === "connect")).toHaveLength(25);
    expect(events.filter((e) => e === "start:begin")).toHaveLength(1);
    const otherEvents = await other!.rpc<string[]>("log");
    expect(otherEvents.slice(0, 2)).toEqual(["start:begin", "start:end"]);
    expect([...otherEvents].sort()).toEqual(["connect", "rpc", "start:begin", "start:end", "tick"]);
    expect(server.stats().instances).toBe(2);
  });

  it("finishes a slow onStart before any onConnect, RPC, request or schedule reaches the instance", async () => {
    server = await startServer({ SlowStart });
    const url = wsUrl(server, "/agents/slow-start/ordered");
    const [a, b, response] = await Promise.all([
      open(url),
      open(url),
      fetch(httpUrl(server, "/agents/slow-start/ordered")).then(
        (r) => r.json() as Promise<string[]>,
      ),
    ]);
    const events = await a.rpc<string[]>("log");
    expect(events.slice(0, 2)).toEqual(["start:begin", "start:end"]);
    // The schedule made inside onStart was due at once, but ran only after onStart ended.
    expect(events.indexOf("tick")).toBeGreaterThan(events.indexOf("start:end"));
    expect(response.slice(0, 2)).toEqual(["start:begin", "start:end"]);
    expect(events.filter((e) => e === "connect")).toHaveLength(2);
    expect(b.frames("cf_agent_identity")).toHaveLength(1);
  });

  it("runs the hooks in order: onStart, onConnect, onMessage, onClose", async () => {
    server = await startServer({ Counter });
    const first = await connect(wsUrl(server, "/agents/counter/hooks?tag=a"));
    first.send("hi");
    await first.waitFor((m) => m === "echo:hi");
    first.ws.close(1000, "bye");
    await first.closed;
    const second = await open(wsUrl(server, "/agents/counter/hooks?tag=b"));
    await waitFor(
      async () => (await second.rpc<string[]>("getEvents")).includes("close:1000"),
      "onClose of the first connection",
    );
    expect(await second.rpc("getEvents")).toEqual([
      "start",
      "connect:a",
      "message:hi",
      "close:1000",
      "connect:b",
    ]);
  });

  it("sends nothing else to a connection that onConnect closes", async () => {
    server = await startServer({ Counter });
    const closed = await refused(wsUrl(server, "/agents/counter/reject?reject=1"));
    expect(closed).toEqual({ code: 4001, reason: "Unauthorized", received: [] });
  });

  it("evicts an idle instance, closing its database, and brings it back with its state", async () => {
    server = await startServer({ Counter }, { idleTimeout: 100 });
    const dbFile = join(server.dataDir, "counter", "evict.sqlite");
    const starts = Counter.starts;
    const first = await connect(wsUrl(server, "/agents/counter/evict"));
    for (let i = 0; i < 3; i++) await first.rpc("increment");
    expect(existsSync(`${dbFile}-wal`)).toBe(true);
    await first.close();
    await waitFor(() => server!.stats().instances === 0, "the idle instance to be evicted");
    // SQLite removes the WAL file when the last connection to the database closes.
    expect(existsSync(`${dbFile}-wal`)).toBe(false);
    const again = await open(wsUrl(server, "/agents/counter/evict"));
    expect(again.frames("cf_agent_state")[0]).toEqual({
      type: "cf_agent_state",
      state: { count: 3 },
    });
    expect(await again.rpc("increment")).toBe(4);
    expect(Counter.starts).toBe(starts + 2);
  });

  it("keeps an instance with a connection in memory past the idle timeout", async () => {
    server = await startServer({ Counter }, { idleTimeout: 50 });
    const client = await open(wsUrl(server, "/agents/counter/busy"));
    await client.rpc("slowEcho", [1, 200]);
    expect(server.stats().instances).toBe(1);
  });

  it("does not evict an instance while a streaming call is still running", async () => {
    server = await startServer({ SlowStreamWriter }, { idleTimeout: 20 });
    const url = wsUrl(server, "/agents/slow-stream-writer/streaming");
    const client = await open(url);
    client.sendCall("slowWriteStream", [250]);
    await client.waitFor((m) => JSON.stringify(m).includes('"result":"started"'));
    // The caller leaves; the stream goes on writing after it.
    await client.close();
    await waitFor(() => server!.stats().instances === 0, "the instance to be evicted");
    const again = await open(url);
    expect(again.frames("cf_agent_state")[0]).toEqual({
      type: "cf_agent_state",
      state: { writes: 1 },
    });
  });

  it("retries an onStart that threw on the next connection (1011 for the first); other agents unaffected", async () => {
    server = await startServer({ FlakyStart, Counter });
    FlakyStart.failures.set("fragile", 1);
    const starts = FlakyStart.starts;
    const url = wsUrl(server, "/agents/flaky-start/fragile");
    const [failed, neighbour] = await Promise.all([
      refused(url),
      open(wsUrl(server, "/agents/counter/neighbour")),
    ]);
    expect(failed.code).toBe(1011);
    expect(failed.reason).toBe("agent failed to start");
    expect(failed.received).toEqual([]);
    expect(JSON.stringify(failed)).not.toContain("hunter2");
    expect(await neighbour.rpc("increment")).toBe(1);
    expect(server.stats().instances).toBe(1);

    const retried = await open(url);
    expect(await retried.rpc("ping")).toBe("pong");
    expect(FlakyStart.starts).toBe(starts + 2);
  });

  it("answers HTTP to an agent whose onStart threw with 500, without internals, and retries next time", async () => {
    server = await startServer({ FlakyStart });
    FlakyStart.failures.set("http", 1);
    const first = await fetch(httpUrl(server, "/agents/flaky-start/http"));
    expect(first.status).toBe(500);
    expect(await first.text()).not.toContain("hunter2");
    const second = await fetch(httpUrl(server, "/agents/flaky-start/http"));
    expect(second.status).toBe(404); // FlakyStart has no onRequest: the default answer.
  });
});

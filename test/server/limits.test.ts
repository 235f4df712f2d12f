import { afterEach, describe, expect, it } from "vitest";
import { Counter, Sequencer } from "../fixtures/agents.js";
import { startServer, type TestServer, wsUrl } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";
import { connect, type RawClient, refused } from "../helpers/ws-client.js";

let server: TestServer | undefined;
const clients: RawClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.ws.terminate();
  await server?.stop();
  server = undefined;
});

async function open(path: string): Promise<RawClient> {
  const client = await connect(wsUrl(server!, path));
  clients.push(client);
  return client;
}

describe("bad input and limits", () => {
  it("passes malformed JSON to onMessage instead of failing", async () => {
    server = await startServer({ Counter });
    const client = await open("/agents/counter/malformed");
    for (const text of ["{not json", '{"type":"rpc",', "{}}", "{"]) client.send(text);
    const echoes = await client.waitForCount(
      (m) => typeof m === "string" && m.startsWith("echo:"),
      4,
      "echoes",
    );
    expect(echoes).toEqual(["echo:{not json", 'echo:{"type":"rpc",', "echo:{}}", "echo:{"]);
    expect(await client.rpc("increment")).toBe(1);
  });

  it("closes a connection that sends a frame over maxPayload with 1009; the server and other connections carry on", async () => {
    server = await startServer({ Counter }, { maxPayload: 1024 });
    const big = await open("/agents/counter/payload");
    const other = await open("/agents/counter/payload");
    big.send("x".repeat(1024));
    await big.waitFor((m) => m === `echo:${"x".repeat(1024)}`, "the largest allowed frame");
    big.send("y".repeat(1025));
    expect((await big.closed).code).toBe(1009);
    expect(await other.rpc("increment")).toBe(1);
    const fresh = await open("/agents/counter/payload");
    expect(await fresh.rpc("increment")).toBe(2);
  });

  it("closes the third connection to an instance with 1013 when maxConnectionsPerInstance is 2", async () => {
    server = await startServer({ Counter }, { maxConnectionsPerInstance: 2 });
    const first = await open("/agents/counter/crowded");
    await open("/agents/counter/crowded");
    const third = await refused(wsUrl(server, "/agents/counter/crowded"));
    expect(third.code).toBe(1013);
    expect(third.received).toEqual([]);
    // Another instance of the same agent has its own allowance.
    await open("/agents/counter/elsewhere");
    // A freed slot can be taken again.
    await first.close();
    await waitFor(() => server!.stats().connections === 2, "the first connection to go");
    const again = await open("/agents/counter/crowded");
    expect(await again.rpc("increment")).toBe(1);
  });

  it("drops a client that never reads once more than maxBufferedBytes wait for it", async () => {
    server = await startServer({ Sequencer }, { maxBufferedBytes: 256 * 1024 });
    const stuck = await open("/agents/sequencer/reader");
    const other = await open("/agents/sequencer/reader");
    stuck.socket.pause();
    // 64 MiB asked for; the kernel's socket buffers take a few MiB, then the cap must act.
    stuck.sendCall("flood", [1024, 64 * 1024]);
    await waitFor(() => server!.stats().connections === 1, "the stuck client to be dropped");
    expect(await other.rpc("order")).toEqual([]);
    expect(process.memoryUsage().rss).toBeLessThan(1024 * 1024 * 1024);
  });

  it("closes a connection that sends an rpc frame without an id with 1008", async () => {
    server = await startServer({ Counter });
    const client = await open("/agents/counter/no-id");
    client.send({ type: "rpc", method: "increment", args: [] });
    expect(await client.closed).toEqual({ code: 1008, reason: "rpc frame needs a string id" });
    expect(client.frames("rpc")).toEqual([]);
  });

  it("answers a malformed rpc frame that has an id with an error frame, and keeps the connection", async () => {
    server = await startServer({ Counter });
    const client = await open("/agents/counter/bad-rpc");
    client.send({ type: "rpc", id: "no-method", args: [] });
    client.send({ type: "rpc", id: "bad-args", method: "increment", args: "1" });
    expect(await client.answer("no-method")).toEqual({
      type: "rpc",
      id: "no-method",
      success: false,
      error: "rpc frame needs a method name",
    });
    expect(await client.answer("bad-args")).toEqual({
      type: "rpc",
      id: "bad-args",
      success: false,
      error: "rpc args must be an array",
    });
    expect(await client.rpc("increment")).toBe(1);
  });
});

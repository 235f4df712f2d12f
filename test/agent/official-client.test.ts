import { AgentClient } from "agents/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { Agent, callable, getCurrentAgent } from "../../src/index.js";
import { Counter, type CounterState } from "../fixtures/agents.js";
import { startServer, type TestServer } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";

let server: TestServer;
const clients: AgentClient[] = [];

/** Tells a caller where its socket arrived and which id the server gave it. */
class Mirror extends Agent {
  @callable()
  whereAndWho() {
    const { connection } = getCurrentAgent();
    return { path: new URL(connection?.uri ?? "http://x/").pathname, id: connection?.id };
  }
}

beforeAll(async () => {
  server = await startServer({ Counter, Mirror });
});

afterAll(async () => {
  for (const client of clients) client.close();
  await server.stop();
});

/** An official `agents` client on `Counter/<name>`, recording every raw frame. */
async function officialClient(
  name: string,
  onStateUpdate?: (s: CounterState, src: string) => void,
) {
  const raw: string[] = [];
  const client = new AgentClient<unknown, CounterState>({
    agent: "Counter",
    name,
    host: `127.0.0.1:${server.port}`,
    // biome-ignore lint/suspicious/noExplicitAny: partysocket types its WebSocket as the DOM one.
    WebSocket: WebSocket as any,
    ...(onStateUpdate && { onStateUpdate }),
  });
  client.addEventListener("message", (event) => raw.push(String((event as MessageEvent).data)));
  clients.push(client);
  await client.ready;
  return { client, raw };
}

function expectNoStack(frames: string[]) {
  for (const frame of frames) {
    expect(frame).not.toMatch(/\n\s+at /);
    expect(frame).not.toMatch(/\.(ts|js):\d+/);
    expect(frame).not.toMatch(/"stack"/);
  }
}

describe("the official agents client", () => {
  it("receives the identity (kebab agent, instance name) and the initial state", async () => {
    const { client, raw } = await officialClient("identity");
    expect(client.agent).toBe("counter");
    expect(client.name).toBe("identity");
    expect(client.identified).toBe(true);
    expect(client.state).toEqual({ count: 0 });
    const first = JSON.parse(raw[0]!);
    expect(first).toMatchObject({ type: "cf_agent_identity", agent: "counter", name: "identity" });
    expect(JSON.parse(raw[1]!)).toEqual({ type: "cf_agent_state", state: { count: 0 } });
  });

  it("reaches the instance with the official client's path option, under an id the server chose", async () => {
    const client = new AgentClient({
      agent: "Mirror",
      name: "room",
      path: "settings",
      host: `127.0.0.1:${server.port}`,
      // biome-ignore lint/suspicious/noExplicitAny: partysocket types its WebSocket as the DOM one.
      WebSocket: WebSocket as any,
    });
    clients.push(client);
    await client.ready;
    expect(client.name).toBe("room");
    const seen = (await client.call("whereAndWho")) as { path: string; id: string };
    expect(seen.path).toBe("/agents/mirror/room/settings");
    // The official client sends its own `_pk`; Outpost does not let a client pick its id.
    expect(client.id).toMatch(/./);
    expect(seen.id).not.toBe(client.id);
  });

  it("gets cf_agent_mcp_servers with an empty list right after identity and state, as from the SDK", async () => {
    const { raw } = await officialClient("mcp");
    await waitFor(() => raw.length >= 3, "the third frame");
    expect(JSON.parse(raw[2]!)).toEqual({
      type: "cf_agent_mcp_servers",
      mcp: { servers: {}, tools: [], prompts: [], resources: [] },
    });
  });

  it("syncs a client setState to the other clients, not back to the writer", async () => {
    const seenByOther: CounterState[] = [];
    const writer = await officialClient("sync-client");
    const other = await officialClient("sync-client", (s) => seenByOther.push(s));
    writer.client.setState({ count: 7, label: "from-client" });
    await waitFor(
      () => seenByOther.some((s) => s.label === "from-client"),
      "the other client to see the write",
    );
    expect(seenByOther.at(-1)).toEqual({ count: 7, label: "from-client" });
    expect(other.client.state).toEqual({ count: 7, label: "from-client" });
    // The server kept it: a new client starts from it.
    const late = await officialClient("sync-client");
    expect(late.client.state).toEqual({ count: 7, label: "from-client" });
    // The writer is not echoed its own write.
    expect(writer.raw.filter((f) => f.includes("from-client"))).toEqual([]);
  });

  it("syncs a server setState to every client, the caller included", async () => {
    const a = await officialClient("sync-server");
    const b = await officialClient("sync-server");
    expect(await a.client.call("increment", [5])).toBe(5);
    await waitFor(
      () => a.client.state?.count === 5 && b.client.state?.count === 5,
      "both to see 5",
    );
  });

  it("calls a callable over RPC and gets its result", async () => {
    const { client } = await officialClient("rpc");
    expect(await client.call("increment", [2])).toBe(2);
    expect(await client.call("increment")).toBe(3);
    expect(await client.call("slowEcho", [{ nested: [1, "two"] }, 5])).toEqual({
      nested: [1, "two"],
    });
  });

  it("streams a streaming callable: every chunk, then the final value", async () => {
    const { client } = await officialClient("stream");
    const chunks: unknown[] = [];
    let done: unknown;
    const result = await client.call("countdown", [3], {
      stream: { onChunk: (c) => chunks.push(c), onDone: (f) => (done = f) },
    });
    expect(chunks).toEqual([3, 2, 1]);
    expect(done).toBe("liftoff");
    expect(result).toBe("liftoff");
  });

  it("gets an error result from a throwing streaming callable, after its first chunk", async () => {
    const { client, raw } = await officialClient("stream-error");
    const chunks: unknown[] = [];
    let streamError: string | undefined;
    await expect(
      client.call("brokenStream", [], {
        stream: { onChunk: (c) => chunks.push(c), onError: (e) => (streamError = e) },
      }),
    ).rejects.toThrow("stream broke");
    expect(chunks).toEqual(["first"]);
    expect(streamError).toBe("stream broke");
    expectNoStack(raw);
  });

  it("gets error results for a throwing callable, an unknown method and a non-callable method, without stack traces", async () => {
    const { client, raw } = await officialClient("errors");
    await expect(client.call("fail", ["nope"])).rejects.toThrow("nope");
    await expect(client.call("doesNotExist", [])).rejects.toThrow(/doesNotExist is not callable/);
    await expect(client.call("secret", [])).rejects.toThrow(/secret is not callable/);
    await expect(client.call("constructor", [])).rejects.toThrow(/not callable/);
    await expect(client.call("toString", [])).rejects.toThrow(/not callable/);
    const errors = raw.map((f) => JSON.parse(f)).filter((f) => f.type === "rpc" && !f.success);
    expect(errors).toHaveLength(5);
    expect(raw.join("\n")).not.toContain("leaked");
    expectNoStack(raw);
    // The connection is still usable after the errors.
    expect(await client.call("increment")).toBe(1);
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Counter, Viewer } from "../fixtures/agents.js";
import { startServer, type TestServer, wsUrl } from "../helpers/server.js";
import { connect, type RawClient } from "../helpers/ws-client.js";

let server: TestServer;
const clients: RawClient[] = [];

beforeAll(async () => {
  server = await startServer({ Counter, Viewer });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await server.stop();
});

async function open(path: string): Promise<RawClient> {
  const client = await connect(wsUrl(server, path));
  clients.push(client);
  return client;
}

/** A round trip on `client`, so that anything sent to it before has arrived. */
async function settle(...all: RawClient[]): Promise<void> {
  await Promise.all(all.map((c) => c.rpc("getEvents").catch(() => c.rpc("value"))));
}

describe("state", () => {
  it("sends the identity frame, then the state, on connect", async () => {
    const client = await open("/agents/counter/initial");
    expect(client.received.slice(0, 2)).toEqual([
      { type: "cf_agent_identity", agent: "counter", name: "initial", stateFollows: true },
      { type: "cf_agent_state", state: { count: 0 } },
    ]);
  });

  it("a connection opened after each state change gets that state on connect, from a server write or a client's", async () => {
    const first = await open("/agents/counter/connect-after-change");
    expect(first.frames("cf_agent_state")[0]).toEqual({
      type: "cf_agent_state",
      state: { count: 0 },
    });
    expect(await first.rpc("increment")).toBe(1);
    const second = await open("/agents/counter/connect-after-change");
    expect(second.frames("cf_agent_state")[0]).toEqual({
      type: "cf_agent_state",
      state: { count: 1 },
    });
    second.send({ type: "cf_agent_state", state: { count: 7, label: "c" } });
    await first.waitFor((m) => JSON.stringify(m).includes('"label":"c"'));
    const third = await open("/agents/counter/connect-after-change");
    expect(third.frames("cf_agent_state")[0]).toEqual({
      type: "cf_agent_state",
      state: { count: 7, label: "c" },
    });
  });

  it("broadcasts a client's state write to the other connections only, and keeps it", async () => {
    const writer = await open("/agents/counter/client-write");
    const other = await open("/agents/counter/client-write");
    writer.send({ type: "cf_agent_state", state: { count: 5, label: "w" } });
    expect(await other.waitFor((m) => JSON.stringify(m).includes('"label":"w"'))).toEqual({
      type: "cf_agent_state",
      state: { count: 5, label: "w" },
    });
    await settle(writer);
    expect(writer.frames("cf_agent_state")).toHaveLength(1);
    expect(await writer.rpc("increment")).toBe(6);
  });

  it("refuses a write that validateStateChange rejects: cf_agent_state_error, others see nothing", async () => {
    const writer = await open("/agents/counter/validate");
    const other = await open("/agents/counter/validate");
    writer.send({ type: "cf_agent_state", state: { count: -1 } });
    writer.send({ type: "cf_agent_state", state: { count: "many" } });
    const errors = await writer.waitForCount(
      (m) => typeof m === "object" && (m as { type?: string }).type === "cf_agent_state_error",
      2,
      "state errors",
    );
    expect(errors).toEqual([
      { type: "cf_agent_state_error", error: "State update rejected: count must not be negative" },
      { type: "cf_agent_state_error", error: "State update rejected: count must be a number" },
    ]);
    await settle(writer, other);
    expect(other.frames("cf_agent_state")).toHaveLength(1); // only the initial one
    expect(other.frames("cf_agent_state_error")).toHaveLength(0);
    const late = await open("/agents/counter/validate");
    expect(late.frames("cf_agent_state")[0]).toEqual({
      type: "cf_agent_state",
      state: { count: 0 },
    });
  });

  it("refuses a server-side setState that validateStateChange rejects, as an RPC error", async () => {
    const client = await open("/agents/counter/validate-server");
    const answer = await client.call("increment", [-5]);
    expect(answer).toMatchObject({ success: false, error: "count must not be negative" });
    expect(await client.rpc("increment")).toBe(1);
  });

  it("refuses state writes from a read-only connection; others see nothing", async () => {
    const reader = await open("/agents/viewer/ro?readonly=1");
    const writer = await open("/agents/viewer/ro");
    reader.send({ type: "cf_agent_state", state: { value: 99 } });
    expect(await reader.waitFor((m) => JSON.stringify(m).includes("cf_agent_state_error"))).toEqual(
      {
        type: "cf_agent_state_error",
        error: "Connection is readonly",
      },
    );
    await settle(reader, writer);
    expect(writer.frames("cf_agent_state")).toHaveLength(1);
    expect(await writer.rpc("value")).toBe(0);
    // The read-only connection still reads: it sees the other connection's write.
    writer.send({ type: "cf_agent_state", state: { value: 3 } });
    await reader.waitFor((m) => JSON.stringify(m).includes('"value":3'));
    expect(await reader.rpc("value")).toBe(3);
  });
});

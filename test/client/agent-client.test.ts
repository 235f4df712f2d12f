import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  AgentCallError,
  type AgentConnectionError,
  type ConnectionStatus,
  type QueryReason,
} from "../../src/client/index.js";
import { waitFor } from "../helpers/wait.js";
import { closeClients, type LabState, labClient, type Outpost, startOutpost } from "./fixtures.js";

let outpost: Outpost;
let instance = 0;
/** A fresh instance name per test, so tests do not share agent state. */
const room = () => `room-${++instance}`;

beforeAll(async () => {
  outpost = await startOutpost();
});
afterEach(() => closeClients());
afterAll(async () => {
  await outpost.dispose();
});

/** A `query` function that records why it ran and hands out fresh tokens. */
function tokenQuery(name: string, ttl = 60) {
  const reasons: QueryReason[] = [];
  const query = async ({ reason }: { reason: QueryReason }) => {
    reasons.push(reason);
    return { token: await outpost.token(name, ttl) };
  };
  return { query, reasons };
}

describe("state", () => {
  it("receives the agent's state on connect, before ready resolves", async () => {
    const name = room();
    const client = labClient(outpost, { name, query: { token: await outpost.token(name) } });
    await client.ready;
    expect(client.state).toEqual({ count: 0 });
    expect(client.readyState).toBe(1);
    expect(client.status).toEqual({ state: "open" });
    expect(client.name).toBe(name);
    expect(client.agent).toBe("lab");
  });

  it("sends setState to the server, which passes it to other clients", async () => {
    const name = room();
    const seen: Array<[LabState, string]> = [];
    const writer = labClient(outpost, { name, query: { token: await outpost.token(name) } });
    const reader = labClient(outpost, {
      name,
      query: { token: await outpost.token(name) },
      onStateUpdate: (state, source) => seen.push([state, source]),
    });
    await Promise.all([writer.ready, reader.ready]);
    writer.setState({ count: 7, note: "from writer" });
    expect(writer.state).toEqual({ count: 7, note: "from writer" });
    await waitFor(() => reader.state?.count === 7, "the other client to see the write");
    expect(seen.at(-1)).toEqual([{ count: 7, note: "from writer" }, "server"]);
  });

  it("applies state changes the agent makes itself", async () => {
    const name = room();
    const client = labClient(outpost, { name, query: { token: await outpost.token(name) } });
    await client.call("increment", [3]);
    await waitFor(() => client.state?.count === 3, "the broadcast state");
  });

  it("reports a refused state write through onStateUpdateError", async () => {
    const name = room();
    const errors: string[] = [];
    const client = labClient(outpost, {
      name,
      query: { token: await outpost.token(name) },
      onStateUpdateError: (error) => errors.push(error),
    });
    await client.ready;
    client.setState({ count: "many" } as unknown as LabState);
    await waitFor(() => errors.length > 0, "a state error");
    expect(errors[0]).toContain("count must be a number");
  });
});

describe("rpc", () => {
  it("returns a callable's result, through call() and through the stub", async () => {
    const name = room();
    const client = labClient(outpost, { name, query: { token: await outpost.token(name) } });
    expect(await client.call("increment", [2])).toBe(2);
    expect(await client.stub.increment!(5)).toBe(7);
  });

  it("leaves then/toJSON off the stub so it can be awaited and logged", async () => {
    const name = room();
    const client = labClient(outpost, { name, query: { token: await outpost.token(name) } });
    expect((client.stub as Record<string, unknown>).then).toBeUndefined();
    expect((client.stub as Record<string, unknown>).toJSON).toBeUndefined();
    expect(JSON.stringify(client.stub)).toBe("{}");
  });

  it("rejects with remote_error and the agent's message when the method throws", async () => {
    const name = room();
    const client = labClient(outpost, { name, query: { token: await outpost.token(name) } });
    const error = await client.call("fail", ["nope"]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AgentCallError);
    expect(error).toMatchObject({ code: "remote_error", method: "fail", message: "nope" });
  });

  it("streams each chunk, then resolves with the final value", async () => {
    const name = room();
    const client = labClient(outpost, { name, query: { token: await outpost.token(name) } });
    const chunks: unknown[] = [];
    let done: unknown;
    const result = await client.call("countdown", [3], {
      stream: { onChunk: (chunk) => chunks.push(chunk), onDone: (final) => (done = final) },
    });
    expect(chunks).toEqual([3, 2, 1]);
    expect(done).toBe("liftoff");
    expect(result).toBe("liftoff");
  });

  it("rejects with timeout when the agent does not answer in time", async () => {
    const name = room();
    const client = labClient(outpost, { name, query: { token: await outpost.token(name) } });
    await client.ready;
    const started = Date.now();
    const error = await client
      .call("slow", ["late", 1000], { timeout: 50 })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "timeout", method: "slow" });
    expect(Date.now() - started).toBeLessThan(900);
    // The late answer is dropped, and the connection keeps working.
    expect(await client.call("increment", [1])).toBe(1);
  });

  it("delivers frames the framework does not own to onMessage", async () => {
    const name = room();
    const messages: unknown[] = [];
    const client = labClient(outpost, {
      name,
      query: { token: await outpost.token(name) },
      onMessage: (event) => messages.push(event.data),
    });
    client.send("hello");
    await waitFor(() => messages.length > 0, "the echo");
    expect(messages).toEqual(["echo:hello"]);
  });
});

describe("reconnection", () => {
  it("queues calls made while disconnected and sends them after reconnecting", async () => {
    const name = room();
    const statuses: ConnectionStatus[] = [];
    const client = labClient(outpost, {
      name,
      query: tokenQuery(name).query,
      onStatusChange: (status) => statuses.push(status),
    });
    await client.ready;
    expect(await client.call("kick", [1011, "going down"])).toBe("bye");
    await waitFor(() => client.status.state === "connecting", "the drop");
    const queued = client.call<number>("increment", [4]);
    client.send("while away");
    expect(await queued).toBe(4);
    expect(statuses.some((s) => s.state === "connecting" && s.lastClose?.code === 1011)).toBe(true);
    expect(client.status.state).toBe("open");
  });

  it("rejects a call in flight when the socket drops, with connection_lost", async () => {
    const own = await startOutpost();
    try {
      const name = room();
      const client = labClient(own, {
        name,
        query: async () => ({ token: await own.token(name) }),
      });
      await client.ready;
      const inFlight = client.call("slow", ["never", 1500]).catch((e: unknown) => e);
      await new Promise((resolve) => setTimeout(resolve, 50));
      const stopped = own.stop();
      const error = await inFlight;
      expect(error).toBeInstanceOf(AgentCallError);
      expect(error).toMatchObject({ code: "connection_lost", method: "slow" });
      await stopped;
      await own.restart();
      expect(await client.call("increment", [1])).toBe(1);
    } finally {
      await own.dispose();
    }
  });

  it("reconnects after a server restart on the same port and data directory, state back", async () => {
    const own = await startOutpost();
    try {
      const name = room();
      const updates: LabState[] = [];
      const client = labClient(own, {
        name,
        query: async () => ({ token: await own.token(name) }),
        onStateUpdate: (state) => updates.push(state),
      });
      expect(await client.call("increment", [5])).toBe(5);
      await own.stop();
      await waitFor(() => client.status.state === "connecting", "the drop");
      expect(client.readyState).toBe(0);
      updates.length = 0;
      const afterRestart = client.call<number>("increment", [1]);
      await own.restart();
      await client.ready;
      expect(updates[0]).toEqual({ count: 5 });
      expect(await afterRestart).toBe(6);
    } finally {
      await own.dispose();
    }
  });

  it("spreads retries out with jitter and grows them up to the cap", async () => {
    const own = await startOutpost();
    const name = room();
    const delays: number[] = [];
    const client = labClient(own, {
      name,
      query: async () => ({ token: await own.token(name) }),
      reconnect: { minDelay: 40, maxDelay: 160, factor: 2, jitter: 0.5 },
      onStatusChange: (status) => {
        if (status.state === "connecting" && status.delay !== undefined) delays.push(status.delay);
      },
    });
    await client.ready;
    await own.dispose();
    await waitFor(() => delays.length >= 6, "six retries", 10_000);
    client.close();
    const nominal = [40, 80, 160, 160, 160, 160];
    delays.slice(0, 6).forEach((delay, i) => {
      expect(delay).toBeGreaterThanOrEqual(nominal[i]! / 2);
      expect(delay).toBeLessThanOrEqual(nominal[i]!);
    });
  });
});

describe("credentials", () => {
  it("re-runs query and reconnects after a 4001 close", async () => {
    const name = room();
    const reasons: QueryReason[] = [];
    let first = true;
    const client = labClient(outpost, {
      name,
      query: async ({ reason }) => {
        reasons.push(reason);
        if (first) {
          first = false;
          return { token: "not-a-valid-token" };
        }
        return { token: await outpost.token(name) };
      },
    });
    await client.ready;
    expect(reasons).toEqual(["connect", "unauthorized"]);
    expect(client.connectionError).toBeNull();
    expect(await client.call("increment", [1])).toBe(1);
  });

  it("gives up with connectionError unauthorized when fresh credentials keep being refused", async () => {
    const name = room();
    const errors: AgentConnectionError[] = [];
    let runs = 0;
    const client = labClient(outpost, {
      name,
      query: () => {
        runs++;
        return { token: "still-not-valid" };
      },
      reconnect: { minDelay: 10, maxDelay: 20, maxAuthRetries: 2 },
      onConnectionError: (error) => errors.push(error),
    });
    await expect(client.ready).rejects.toMatchObject({ code: "unauthorized", closeCode: 4001 });
    expect(runs).toBe(3);
    expect(errors).toHaveLength(1);
    expect(client.connectionError).toBe(errors[0]);
    expect(client.status).toMatchObject({ state: "closed", reason: "failed" });
    await expect(client.call("increment")).rejects.toMatchObject({ code: "closed" });
  });

  it("stops on 4003 with connectionError forbidden and does not retry", async () => {
    const name = room();
    let runs = 0;
    const client = labClient(outpost, {
      name,
      // A valid token, but for another instance.
      query: async () => {
        runs++;
        return { token: await outpost.token(`${name}-other`) };
      },
    });
    await expect(client.ready).rejects.toMatchObject({ code: "forbidden", closeCode: 4003 });
    expect(client.connectionError?.code).toBe("forbidden");
    expect(client.readyState).toBe(3);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(runs).toBe(1);
  });

  it("stops on 4009 when the server revokes the session", async () => {
    const name = room();
    const client = labClient(outpost, {
      name,
      query: async () => ({ token: await outpost.token(name, 60, "revoked-user") }),
    });
    await client.ready;
    const pending = client.call("slow", ["x", 2000]).catch((e: unknown) => e);
    await outpost.server.revoke({ sub: "revoked-user" });
    await waitFor(() => client.connectionError !== null, "the revocation");
    expect(client.connectionError).toMatchObject({ code: "revoked", closeCode: 4009 });
    expect(await pending).toMatchObject({ code: "connection_lost" });
  });

  it("waits the time a 4008 close asks for before trying again", async () => {
    const name = room();
    const statuses: ConnectionStatus[] = [];
    let kicked = false;
    const client = labClient(outpost, {
      name,
      query: tokenQuery(name).query,
      onStatusChange: (status) => statuses.push(status),
    });
    await client.ready;
    kicked = true;
    await client.call("kick", [4008, "too many failed attempts; retry in 1s"]);
    await waitFor(() => client.status.state === "connecting", "the 4008 close");
    const wait = statuses.find((s) => s.state === "connecting" && s.lastClose?.code === 4008);
    expect(wait).toMatchObject({ state: "connecting" });
    const delay = (wait as { delay: number }).delay;
    expect(delay).toBeGreaterThanOrEqual(1000);
    expect(delay).toBeLessThanOrEqual(1100);
    const started = Date.now();
    await client.ready;
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(kicked).toBe(true);
  });

  it("refreshes a token in-band before it expires, without reconnecting", async () => {
    const name = room();
    const { query, reasons } = tokenQuery(name, 2);
    let opens = 0;
    const client = labClient(outpost, { name, query, onOpen: () => opens++ });
    await client.ready;
    const firstExpiry = await client.call<number>("expiry");
    // Past the first token's expiry: the server would have closed 4001 without a refresh.
    await new Promise((resolve) => setTimeout(resolve, 2600));
    expect(reasons).toContain("refresh");
    expect(reasons).not.toContain("unauthorized");
    expect(opens).toBe(1);
    expect(client.status.state).toBe("open");
    expect(await client.call<number>("expiry")).toBeGreaterThan(firstExpiry);
  });

  it("without in-band refresh, is closed 4001 at expiry and reconnects with a fresh token", async () => {
    const name = room();
    const { query, reasons } = tokenQuery(name, 1);
    let opens = 0;
    const client = labClient(outpost, { name, query, refresh: false, onOpen: () => opens++ });
    await client.ready;
    await waitFor(() => opens >= 2, "a second connection", 5000);
    expect(reasons.slice(0, 2)).toEqual(["connect", "unauthorized"]);
    expect(client.connectionError).toBeNull();
  });
});

describe("lifecycle", () => {
  it("close() rejects pending calls and ready, and stops reconnecting", async () => {
    const name = room();
    const client = labClient(outpost, { name, query: tokenQuery(name).query });
    await client.ready;
    const pending = client.call("slow", ["x", 1000]);
    client.close();
    await expect(pending).rejects.toMatchObject({ code: "closed" });
    await expect(client.ready).rejects.toMatchObject({ code: "closed" });
    expect(client.status).toEqual({ state: "closed", reason: "closed_by_client" });
    expect(client.connectionError).toBeNull();
  });

  it("startClosed waits for reconnect(), and reconnect() opens a closed client again", async () => {
    const name = room();
    const { query, reasons } = tokenQuery(name);
    const client = labClient(outpost, { name, query, startClosed: true });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(reasons).toEqual([]);
    expect(client.status).toEqual({ state: "closed", reason: "not_started" });
    const early = client.call<number>("increment", [1]);
    client.reconnect();
    expect(await early).toBe(1);
    client.close();
    client.reconnect();
    await client.ready;
    expect(await client.call<number>("increment", [1])).toBe(2);
  });

  it("fails with invalid_options when there is no host outside a browser", async () => {
    const client = labClient(outpost, { name: room(), host: undefined });
    await expect(client.ready).rejects.toMatchObject({ code: "invalid_options" });
  });
});

describe("MCP server list", () => {
  it("reports the server's cf_agent_mcp_servers through onMcpUpdate, never to onMessage", async () => {
    const name = room();
    const updates: unknown[] = [];
    const messages: string[] = [];
    const client = labClient(outpost, {
      name,
      query: { token: await outpost.token(name) },
      onMcpUpdate: (mcp) => updates.push(mcp),
      onMessage: (event) => messages.push(String(event.data)),
    });
    await client.ready;
    await waitFor(() => updates.length === 1, "the MCP list");
    expect(updates[0]).toEqual({ servers: {}, tools: [], prompts: [], resources: [] });
    client.send("after");
    await waitFor(() => messages.includes("echo:after"), "the echo");
    expect(messages).toEqual(["echo:after"]);
  });
});

describe("send", () => {
  it("returns true when the message went out at once and false when it waits for the connection", async () => {
    const name = room();
    const echoes: string[] = [];
    const client = labClient(outpost, {
      name,
      query: { token: await outpost.token(name) },
      startClosed: true,
      onMessage: (event) => echoes.push(String(event.data)),
    });
    expect(client.send("queued")).toBe(false);
    client.reconnect();
    await client.ready;
    expect(client.send("direct")).toBe(true);
    await waitFor(() => echoes.length === 2, "both echoes");
    expect(echoes).toEqual(["echo:queued", "echo:direct"]);
  });
});

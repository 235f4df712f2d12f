import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { AgentCallError, AgentClient } from "../../src/client/index.js";
import { waitFor, within } from "../helpers/wait.js";
import { testCluster } from "./cluster-nodes.js";

/**
 * A call that is running on an instance's owner when the owner is killed (kill -9), seen
 * from a client carried by another node: over WebSocket (an RPC) and over HTTP (the relay
 * to `onRequest`). Real node processes (lease 3 s) on one schema of the machine's
 * PostgreSQL; each test runs its own edge and owner.
 */

const cluster = testCluster();
const clients: AgentClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await cluster.stop();
});

const isRunning = (data: unknown, text: string) =>
  typeof data === "string" && data.includes('"type":"running"') && data.includes(text);

/**
 * Nodes `<name>-edge` and `<name>-owner`, and room `name` on the owner: its first client,
 * `watcher`, connects there, so the owner claims it.
 */
async function edgeAndOwner(name: string) {
  const edge = await cluster.node(`${name}-edge`);
  const owner = await cluster.node(`${name}-owner`);
  const watcher = await cluster.open(owner, name);
  expect(await watcher.rpc("where")).toBe(owner.id);
  return { edge, owner, watcher };
}

describe("the owner is killed while a call runs", () => {
  it("an RPC in flight when the owner is killed rejects on the client, is never answered twice, and a retry after reconnect reaches the new owner", async () => {
    const name = "mid-call";
    const { edge, owner } = await edgeAndOwner(name);

    const client = new AgentClient({
      agent: "room",
      name,
      host: `127.0.0.1:${edge.port}`,
      WebSocket,
      query: async () => ({ token: await cluster.token("alice", name) }),
      reconnect: { minDelay: 50, maxDelay: 500 },
    });
    clients.push(client);
    const closes: Array<{ code: number; reason: string }> = [];
    client.addEventListener("close", (event) =>
      closes.push({ code: event.code, reason: event.reason }),
    );
    const answers: Array<{ id: unknown; result: unknown }> = [];
    let running = 0;
    client.addEventListener("message", (event) => {
      if (isRunning(event.data, "in-flight")) running++;
      if (typeof event.data !== "string" || !event.data.includes('"type":"rpc"')) return;
      const frame = JSON.parse(event.data) as { id: unknown; result: unknown; done?: boolean };
      if (frame.done !== false) answers.push({ id: frame.id, result: frame.result });
    });
    await client.ready;
    expect(await client.call("where")).toBe(owner.id);
    const acknowledged: string[] = [];
    for (let i = 0; i < 5; i++) {
      const text = `acknowledged-${i}`;
      await client.call("post", [text]);
      acknowledged.push(text);
    }

    // The slow call is running on the owner (it said so) when the owner dies.
    const inFlight = client.call("slowPost", ["in-flight", 30_000]).catch((error) => error);
    await waitFor(() => running === 1, "the slow call to run on the owner", 10_000);
    const killedAt = Date.now();
    await owner.kill("SIGKILL");
    const error = await within(inFlight, 10_000, "the in-flight call to settle");
    const rejectedMs = Date.now() - killedAt;
    expect(error).toBeInstanceOf(AgentCallError);
    expect(error).toMatchObject({ code: "connection_lost", method: "slowPost" });
    // The edge closed the carried socket 1013 (try again later) as the owner's link died.
    expect(closes[0]?.code).toBe(1013);

    // The client reconnects to the edge by itself; once the lease is over, the instance
    // is served on the survivor.
    await waitFor(
      async () => {
        try {
          return (await client.call("where", [], { timeout: 5_000 })) === edge.id;
        } catch {
          return false;
        }
      },
      "the instance on the survivor",
      25_000,
    );
    const backMs = Date.now() - killedAt;
    // Every acknowledged write is there; the killed call's write, due after its wait, is not.
    expect(await client.call("texts")).toEqual(acknowledged);
    expect(await client.call("slowPost", ["retried", 10])).toBe("retried");
    expect(await client.call("texts")).toEqual([...acknowledged, "retried"]);

    // Nothing answered the killed call, then or later, and nothing ran it again (a replay
    // would say it runs on the survivor): each answer is to a call of its own, and none
    // carries the killed call's result.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(running).toBe(1);
    const ids = answers.map((a) => a.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(answers.map((a) => a.result)).not.toContain("in-flight");
    expect(answers.map((a) => a.result)).toContain("retried");
    console.log(
      `RPC in flight at kill -9 of its owner: rejected connection_lost after ${rejectedMs} ms ` +
        `(close ${closes[0]?.code} ${closes[0]?.reason}); served on the survivor ${backMs} ms after the kill`,
    );
  }, 90_000);

  it("an HTTP request in flight when the owner is killed is answered 503 with a retry hint and no stack, not left hanging; retried, it reaches the survivor", async () => {
    const name = "mid-request";
    const { edge, owner, watcher } = await edgeAndOwner(name);

    const token = await cluster.token("alice", name);
    const response = fetch(`http://127.0.0.1:${edge.port}/agents/room/${name}/slow?token=${token}`);
    // The request reached onRequest on the owner (it said so to the instance's clients).
    await watcher.waitFor((m) => isRunning(JSON.stringify(m), "/slow"), "onRequest to run", 10_000);
    const killedAt = Date.now();
    await owner.kill("SIGKILL");
    const answer = await within(response, 10_000, "the relayed request to be answered");
    const answeredMs = Date.now() - killedAt;
    const body = await answer.text();
    expect(answer.status).toBe(503);
    expect(Number(answer.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(body).not.toMatch(/\bat .*:\d+:\d+|Error:/);
    expect(body).not.toContain(token);
    // Retried as the hint says, the request reaches the instance on the survivor.
    let retried: { node?: string } = {};
    await waitFor(
      async () => {
        const again = await fetch(
          `http://127.0.0.1:${edge.port}/agents/room/${name}?token=${token}`,
        );
        if (again.status === 200) retried = (await again.json()) as { node?: string };
        else await again.body?.cancel();
        return again.status === 200;
      },
      "a retried request to be answered",
      25_000,
    );
    expect(retried.node).toBe(edge.id);
    console.log(
      `HTTP request in flight at kill -9 of its owner: ${answer.status} after ${answeredMs} ms, body ${body}`,
    );
  }, 60_000);
});

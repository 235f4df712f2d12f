import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { AgentClient, type QueryReason } from "../../src/client/index.js";
import { waitFor } from "../helpers/wait.js";
import { startOutpost } from "./fixtures.js";

/**
 * A peer that speaks only the Cloudflare Agents protocol, like an agent on Workers: it
 * sends identity (without `stateFollows`) and state, answers `rpc`, relays state writes,
 * and has never heard of `outpost_` frames.
 */
function cloudflarePeer() {
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });
  let state: unknown = { count: 0 };
  const received: Array<Record<string, unknown>> = [];
  const urls: string[] = [];
  wss.on("connection", (socket, request) => {
    urls.push(request.url ?? "");
    const [, , agent, name] = (request.url ?? "").split("?")[0]!.split("/");
    socket.send(JSON.stringify({ type: "cf_agent_identity", agent, name }));
    socket.send(JSON.stringify({ type: "cf_agent_state", state }));
    socket.on("message", (data) => {
      const frame = JSON.parse(String(data)) as Record<string, unknown>;
      received.push(frame);
      if (frame.type === "rpc" && frame.method === "add") {
        const [a, b] = frame.args as number[];
        socket.send(
          JSON.stringify({ type: "rpc", id: frame.id, success: true, result: a! + b!, done: true }),
        );
      } else if (frame.type === "cf_agent_state") {
        state = frame.state;
        for (const other of wss.clients) {
          if (other !== socket) other.send(JSON.stringify({ type: "cf_agent_state", state }));
        }
      }
    });
  });
  return {
    wss,
    received,
    urls,
    host: () => `127.0.0.1:${(wss.address() as AddressInfo).port}`,
  };
}

let peer: ReturnType<typeof cloudflarePeer>;
let tokens: Awaited<ReturnType<typeof startOutpost>>;

beforeAll(async () => {
  peer = cloudflarePeer();
  await new Promise((resolve) => peer.wss.once("listening", resolve));
  tokens = await startOutpost();
});
afterAll(async () => {
  for (const socket of peer.wss.clients) socket.terminate();
  await new Promise((resolve) => peer.wss.close(resolve));
  await tokens.dispose();
});

it("works with a Cloudflare-protocol-only peer: ready on identity, state, rpc", async () => {
  const a = new AgentClient<{ count: number }>({
    agent: "MyAgent",
    name: "r1",
    host: peer.host(),
    WebSocket,
  });
  const b = new AgentClient<{ count: number }>({
    agent: "MyAgent",
    name: "r1",
    host: peer.host(),
    WebSocket,
  });
  try {
    await Promise.all([a.ready, b.ready]);
    expect(a.state).toEqual({ count: 0 });
    expect(a.agent).toBe("my-agent");
    expect(await a.call("add", [2, 3])).toBe(5);
    a.setState({ count: 9 });
    await waitFor(() => b.state?.count === 9, "the relayed state");
    expect(peer.urls[0]).toBe("/agents/my-agent/r1");
  } finally {
    a.close();
    b.close();
  }
});

it("keeps the connection up when the peer ignores an in-band refresh", async () => {
  const reasons: QueryReason[] = [];
  let opens = 0;
  const client = new AgentClient({
    agent: "MyAgent",
    name: "r2",
    host: peer.host(),
    WebSocket,
    query: async ({ reason }) => {
      reasons.push(reason);
      return { token: await tokens.token("r2", 2) };
    },
    refresh: { timeout: 300 },
    onOpen: () => opens++,
  });
  try {
    await client.ready;
    await waitFor(() => peer.received.some((f) => f.type === "outpost_auth"), "a refresh", 4000);
    // Past the refresh's answer timeout and the token's expiry: nothing changes.
    await new Promise((resolve) => setTimeout(resolve, 1200));
    expect(reasons).toEqual(["connect", "refresh"]);
    expect(opens).toBe(1);
    expect(client.status.state).toBe("open");
    expect(await client.call("add", [1, 1])).toBe(2);
  } finally {
    client.close();
  }
});

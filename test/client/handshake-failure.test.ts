import { createServer as createHttpServer } from "node:http";
import { createServer } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { readHandshakeFailure } from "../../src/client/handshake-failure.js";
import { AgentClient, type ConnectionStatus } from "../../src/client/index.js";
import { waitFor } from "../helpers/wait.js";
import { type Outpost, startOutpost } from "./fixtures.js";

const clients: AgentClient[] = [];
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/** A client that records every status it goes through. */
function watchedClient(options: ConstructorParameters<typeof AgentClient>[0]) {
  const statuses: ConnectionStatus[] = [];
  const client = new AgentClient({
    WebSocket,
    reconnect: { minDelay: 20, maxDelay: 50 },
    ...options,
    onStatusChange: (status) => statuses.push(status),
  });
  clients.push(client);
  return { client, statuses };
}

/** A port nothing listens on: bound on port 0, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe("a client pointed at the wrong place", () => {
  it("gets a final not_found error naming the agent, the host and the agents the server has (4004), without retrying", async () => {
    const outpost: Outpost = await startOutpost({ auth: false });
    cleanups.push(() => outpost.dispose());
    const { client, statuses } = watchedClient({
      agent: "ChatRom",
      name: "lobby",
      host: `127.0.0.1:${outpost.server.port}`,
    });

    await expect(client.ready).rejects.toMatchObject({ code: "not_found", closeCode: 4004 });
    expect(client.connectionError?.message).toBe(
      `no agent "chat-rom" at 127.0.0.1:${outpost.server.port}: unknown agent chat-rom; this server has: lab`,
    );
    // One attempt, then closed: no backoff loop against a name that will never exist.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(statuses.filter((s) => s.state === "connecting" && s.attempt > 1)).toEqual([]);
    expect(client.status).toMatchObject({ state: "closed", reason: "failed" });
  });

  it("treats an HTTP 404 answer to the upgrade as a final not_found too", async () => {
    let upgrades = 0;
    const http = createHttpServer();
    http.on("upgrade", (_req, socket) => {
      upgrades++;
      socket.end("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    });
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise((resolve) => http.close(resolve)));
    const { port } = http.address() as { port: number };
    const { client } = watchedClient({
      agent: "chat-room",
      name: "lobby",
      host: `127.0.0.1:${port}`,
    });

    await expect(client.ready).rejects.toMatchObject({ code: "not_found", closeCode: 1006 });
    expect(client.connectionError?.message).toBe(
      `no agent "chat-room" at 127.0.0.1:${port} (HTTP 404 for /agents/chat-room/lobby)`,
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(upgrades).toBe(1);
  });

  it("gets a distinct unreachable error naming host and port when no server listens, final after maxUnreachableRetries", async () => {
    const port = await closedPort();
    const { client, statuses } = watchedClient({
      agent: "chat-room",
      host: `127.0.0.1:${port}`,
      reconnect: { minDelay: 20, maxDelay: 50, maxUnreachableRetries: 2 },
    });

    await expect(client.ready).rejects.toMatchObject({ code: "unreachable" });
    expect(client.connectionError?.message).toBe(
      `no server at 127.0.0.1:${port} (connection refused)`,
    );
    // Retried with backoff first, each retry's status saying why.
    const retries = statuses.filter((s) => s.state === "connecting" && s.error !== undefined);
    expect(retries.map((s) => s.state === "connecting" && [s.attempt, s.error?.code])).toEqual([
      [2, "unreachable"],
      [3, "unreachable"],
    ]);
  });

  it("keeps retrying a refused connection once the server has accepted it (a restart), and comes back", async () => {
    const outpost = await startOutpost({ auth: false });
    cleanups.push(() => outpost.dispose());
    const port = outpost.server.port;
    const { client, statuses } = watchedClient({
      agent: "Lab",
      name: "restart",
      host: `127.0.0.1:${port}`,
      reconnect: { minDelay: 20, maxDelay: 50, maxUnreachableRetries: 1 },
    });
    await client.ready;

    await outpost.stop();
    const refusals = () =>
      statuses.filter((s) => s.state === "connecting" && s.error?.code === "unreachable").length;
    await waitFor(() => refusals() >= 4, "several refused retries", 10_000);
    expect(client.connectionError).toBeNull();
    const last = statuses.at(-1);
    expect(last?.state === "connecting" && last.error?.message).toBe(
      `no server at 127.0.0.1:${port} (connection refused)`,
    );

    await outpost.restart();
    await waitFor(() => client.status.state === "open", "the client to come back", 10_000);
    expect(await client.stub.increment!(1)).toBe(1);
  });
});

describe("readHandshakeFailure", () => {
  it("reads the cause from ws's and undici's error events and nothing from a browser's bare one", () => {
    const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), {
      code: "ECONNREFUSED",
    });
    expect(readHandshakeFailure({ error: refused })).toEqual({
      kind: "unreachable",
      cause: "connection refused",
    });
    expect(
      readHandshakeFailure({
        error: new TypeError("fetch failed", { cause: { code: "ENOTFOUND" } }),
      }),
    ).toEqual({ kind: "unreachable", cause: "host not found" });
    expect(readHandshakeFailure({ error: new Error("Unexpected server response: 404") })).toEqual({
      kind: "http",
      status: 404,
    });
    expect(readHandshakeFailure({ type: "error" })).toBeUndefined();
  });
});

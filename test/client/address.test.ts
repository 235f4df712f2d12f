import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { AgentClient } from "../../src/client/index.js";
import { waitFor } from "../helpers/wait.js";
import { closeClients, labClient, type Outpost, startOutpost } from "./fixtures.js";

let outpost: Outpost;
let instance = 0;
const room = () => `address-${++instance}`;

/**
 * A server that routes by itself, as `basePath` expects: it names the instance in its
 * identity frame (from the `user` query, standing in for a session), records the paths it
 * was asked for, and closes a socket on request so the client reconnects.
 */
function routingPeer() {
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });
  const paths: string[] = [];
  wss.on("connection", (socket, request) => {
    const url = new URL(request.url ?? "/", "http://x");
    paths.push(url.pathname);
    const user = url.searchParams.get("user") ?? "nobody";
    socket.send(JSON.stringify({ type: "cf_agent_identity", agent: "user-agent", name: user }));
    socket.on("message", (data) => {
      if (String(data) === "drop") socket.close(1012, "restarting");
    });
  });
  return {
    wss,
    paths,
    host: () => `127.0.0.1:${(wss.address() as AddressInfo).port}`,
  };
}

let peer: ReturnType<typeof routingPeer>;
const peerClients: AgentClient[] = [];

beforeAll(async () => {
  outpost = await startOutpost();
  peer = routingPeer();
  await new Promise((resolve) => peer.wss.once("listening", resolve));
});
afterEach(() => {
  closeClients();
  for (const client of peerClients.splice(0)) client.close();
  vi.restoreAllMocks();
});
afterAll(async () => {
  for (const socket of peer.wss.clients) socket.terminate();
  await new Promise((resolve) => peer.wss.close(resolve));
  await outpost.dispose();
});

describe("identified", () => {
  it("is false until the server accepted the connection, false after a drop, true again", async () => {
    const name = room();
    const client = labClient(outpost, {
      name,
      query: async () => ({ token: await outpost.token(name) }),
      startClosed: true,
    });
    expect(client.identified).toBe(false);
    const seenAtClose: boolean[] = [];
    client.addEventListener("close", () => seenAtClose.push(client.identified));
    client.reconnect();
    await client.ready;
    expect(client.identified).toBe(true);
    await client.call("kick", [1012, "restarting"]);
    await waitFor(() => seenAtClose.length === 1, "the drop");
    expect(seenAtClose).toEqual([false]);
    await waitFor(() => client.identified, "the reconnect");
  });
});

describe("path", () => {
  it("reaches the instance on an Outpost server, socket and HTTP, with the sub-path in the request", async () => {
    const name = room();
    const client = labClient(outpost, {
      name,
      path: "settings/profile",
      query: { token: await outpost.token(name) },
    });
    await client.ready;
    expect(client.name).toBe(name);
    expect(await client.call("where")).toBe(`/agents/lab/${name}/settings/profile`);
    const response = await fetch(client.getHttpUrl());
    expect(await response.json()).toEqual({ pathname: `/agents/lab/${name}/settings/profile` });
  });

  it("connects to the sub-path after the instance and reports it as a PartySocket does", async () => {
    const client = new AgentClient({
      agent: "UserAgent",
      name: "room 1",
      path: "settings/profile",
      host: peer.host(),
      WebSocket,
    });
    peerClients.push(client);
    await client.ready;
    expect(peer.paths.at(-1)).toBe("/agents/user-agent/room%201/settings/profile");
    expect(client.path).toBe("/settings/profile");
    expect(new URL(client.getHttpUrl()).pathname).toBe(
      "/agents/user-agent/room%201/settings/profile",
    );
  });
});

describe("getHttpUrl", () => {
  it("gives the agent's http:// address with the connection's query, which fetch can use as is", async () => {
    const name = room();
    const token = await outpost.token(name);
    const client = labClient(outpost, { name, query: { token } });
    await client.ready;
    const url = new URL(client.getHttpUrl());
    expect(url.protocol).toBe("http:");
    expect(url.pathname).toBe(`/agents/lab/${name}`);
    expect(url.searchParams.get("token")).toBe(token);
    const response = await fetch(url);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ pathname: `/agents/lab/${name}` });
    // Without the query the server refuses the same address.
    url.search = "";
    expect((await fetch(url)).status).toBe(401);
  });

  it("has the query of the latest attempt when query is a function", async () => {
    const name = room();
    const tokens: string[] = [];
    const client = labClient(outpost, {
      name,
      query: async () => {
        const token = await outpost.token(name, 60, `user-${tokens.length}`);
        tokens.push(token);
        return { token };
      },
    });
    expect(new URL(client.getHttpUrl()).pathname).toBe(`/agents/lab/${name}`);
    await client.ready;
    expect(new URL(client.getHttpUrl()).searchParams.get("token")).toBe(tokens.at(-1));
  });

  it("is empty when no URL can be built", () => {
    const client = new AgentClient({ agent: "Lab", WebSocket, startClosed: true });
    expect(client.getHttpUrl()).toBe("");
  });
});

describe("basePath", () => {
  it("connects to basePath instead of /agents/<agent>/<name>, and takes the name the server gives", async () => {
    const client = new AgentClient({
      agent: "UserAgent",
      basePath: "user",
      path: "inbox",
      host: peer.host(),
      query: { user: "alice" },
      WebSocket,
    });
    peerClients.push(client);
    await client.ready;
    expect(peer.paths.at(-1)).toBe("/user/inbox");
    expect(client.name).toBe("alice");
    expect(client.agent).toBe("user-agent");
    expect(new URL(client.getHttpUrl()).pathname).toBe("/user/inbox");
  });
});

describe("onIdentityChange", () => {
  /** A client whose query names another user on every attempt. */
  function switchingClient(onIdentityChange?: (...change: string[]) => void) {
    const users = ["alice", "bob"];
    let attempt = 0;
    const client = new AgentClient({
      agent: "UserAgent",
      basePath: "user",
      host: peer.host(),
      query: () => ({ user: users[attempt++ % users.length] }),
      WebSocket,
      reconnect: { minDelay: 20, maxDelay: 100 },
      ...(onIdentityChange && { onIdentityChange }),
    });
    peerClients.push(client);
    return client;
  }

  it("is called with the old and new name and agent when a reconnect reaches another instance", async () => {
    const changes: string[][] = [];
    const client = switchingClient((...change) => changes.push(change));
    await client.ready;
    expect(changes).toEqual([]);
    client.send("drop");
    await waitFor(() => changes.length === 1, "the identity change");
    expect(changes[0]).toEqual(["alice", "bob", "user-agent", "user-agent"]);
    expect(client.name).toBe("bob");
  });

  it("without a handler, the change is logged as a warning", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const client = switchingClient();
    await client.ready;
    client.send("drop");
    await waitFor(() => client.name === "bob" && client.identified, "the reconnect");
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]![0])).toContain("user-agent/alice → user-agent/bob");
  });
});

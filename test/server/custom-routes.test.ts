import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { AgentClient as OfficialClient } from "agents/client";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { createKeySet, issueToken, type KeySet, tokenAuth } from "../../src/auth/index.js";
import { AgentClient } from "../../src/client/index.js";
import {
  Agent,
  type AgentRoute,
  CloseCode,
  type Connection,
  callable,
  createAgentServer,
  type RouteRequest,
} from "../../src/index.js";
import { captureLogs } from "../helpers/log-capture.js";
import { httpUrl, startServer, type TestServer, tempDir, wsUrl } from "../helpers/server.js";
import { connect, refused, upgradeStatus } from "../helpers/ws-client.js";

/**
 * The server's `route` option: addresses of the app's own choosing (what a client with
 * `basePath` connects to), mapped to an instance by server code, then admitted on the same
 * road as `/agents/<agent>/<name>`.
 */

/** One inbox per user: the instance name is the user, whatever address reached it. */
class UserAgent extends Agent<unknown, { visits: number }> {
  static starts: string[] = [];
  override initialState = { visits: 0 };

  override onStart() {
    UserAgent.starts.push(this.name);
  }

  override onConnect(_connection: Connection) {
    this.setState({ visits: this.state.visits + 1 });
  }

  @callable()
  whoami() {
    return this.name;
  }

  override onRequest(request: Request) {
    return Response.json({ name: this.name, path: new URL(request.url).pathname });
  }
}

class Other extends Agent {}

/**
 * `/me[/…]` goes to the caller's own inbox, named by the subject of the token it presents
 * (unverified here: admission verifies it against the instance chosen). `/as/<user>` lets a
 * test ask for someone else's, `/boom` throws, `/nowhere` names an agent not hosted, and
 * `/bad` gives an instance name no URL could.
 */
function route({ url }: RouteRequest): AgentRoute | undefined {
  const path = url.pathname;
  if (path === "/me" || path.startsWith("/me/")) {
    const token = url.searchParams.get("token");
    return { agent: UserAgent, name: token === null ? "anonymous" : String(decodeJwt(token).sub) };
  }
  if (path.startsWith("/as/")) return { agent: "UserAgent", name: path.slice(4) };
  if (path === "/kebab") return { agent: "user-agent", name: "kebab" };
  if (path === "/boom") throw new Error("route exploded at /srv/app/routes.ts:12");
  if (path === "/nowhere") return { agent: "Missing", name: "x" };
  if (path === "/bad") return { agent: UserAgent, name: "a/b" };
  return undefined;
}

const SECRET = randomBytes(32).toString("base64url");
let keys: KeySet;
let server: TestServer;
const logs = captureLogs();

const tokenFor = (sub: string, name = sub) =>
  issueToken(keys, { sub, agent: "user-agent", name, ttl: 300 });

beforeAll(async () => {
  keys = await createKeySet({ secret: SECRET });
  server = await startServer(
    { UserAgent, Other },
    { auth: tokenAuth({ keys, rateLimit: false }), route, logger: logs.logger },
  );
});

afterAll(async () => {
  await server.stop();
});

/** An Outpost server that does not listen (for an app's own host), closed and removed by `done`. */
function hostedOutpost(server?: Server) {
  const dir = tempDir();
  const outpost = createAgentServer({
    agents: { UserAgent },
    dataDir: dir.dir,
    logger: false,
    auth: tokenAuth({ keys, rateLimit: false }),
    route,
    ...(server !== undefined && { server }),
  });
  const done = async () => {
    await outpost.close();
    dir.remove();
  };
  return { outpost, done };
}

describe("a client with basePath reaches the instance the server's route picks", () => {
  it("outpost/client: identity names the routed instance; RPC, state and path after basePath reach it", async () => {
    const token = await tokenFor("alice");
    const client = new AgentClient<{ visits: number }>({
      agent: "UserAgent",
      basePath: "me",
      path: "inbox",
      host: `127.0.0.1:${server.port}`,
      query: { token },
      WebSocket,
    });
    try {
      await client.ready;
      expect(client.name).toBe("alice");
      expect(client.agent).toBe("user-agent");
      expect(await client.call("whoami")).toBe("alice");
      expect(client.state).toEqual({ visits: 1 });
      expect(new URL(client.getHttpUrl()).pathname).toBe("/me/inbox");
    } finally {
      client.close();
    }
  });

  it("the official agents client with basePath reaches the same instance as /agents/user-agent/<name>", async () => {
    const token = await tokenFor("bob");
    const official = new OfficialClient({
      agent: "UserAgent",
      basePath: "me",
      host: `127.0.0.1:${server.port}`,
      query: { token },
      // biome-ignore lint/suspicious/noExplicitAny: partysocket types its WebSocket as the DOM one.
      WebSocket: WebSocket as any,
    });
    try {
      await official.ready;
      expect(official.name).toBe("bob");
      expect(await official.call("whoami")).toBe("bob");
      // The usual address lands on the very same instance.
      const direct = await connect(wsUrl(server, `/agents/user-agent/bob?token=${token}`));
      expect(await direct.rpc("whoami")).toBe("bob");
      expect(direct.frames("cf_agent_state").at(-1)).toMatchObject({ state: { visits: 2 } });
      await direct.close();
    } finally {
      official.close();
    }
  });

  it("takes the agent as a class, a class name or a URL name", async () => {
    const as = await connect(wsUrl(server, `/as/carol?token=${await tokenFor("carol")}`));
    expect(as.frames("cf_agent_identity")[0]).toMatchObject({ agent: "user-agent", name: "carol" });
    await as.close();
    const kebab = await connect(wsUrl(server, `/kebab?token=${await tokenFor("k", "kebab")}`));
    expect(await kebab.rpc("whoami")).toBe("kebab");
    await kebab.close();
  });
});

describe("a route can choose an instance but never grant access to one", () => {
  it("a token for another instance is refused 4003 at a routed address, and nothing starts", async () => {
    const before = UserAgent.starts.length;
    const mallory = await tokenFor("mallory");
    const closed = await refused(wsUrl(server, `/as/victim?token=${mallory}`));
    expect(closed.code).toBe(CloseCode.Forbidden);
    expect(closed.received).toEqual([]);
    const http = await fetch(httpUrl(server, `/as/victim?token=${mallory}`));
    expect(http.status).toBe(403);
    expect(UserAgent.starts.slice(before)).toEqual([]);
  });

  it("no token at a routed address is refused 4001 and starts nothing", async () => {
    const before = UserAgent.starts.length;
    const closed = await refused(wsUrl(server, "/me"));
    expect(closed.code).toBe(CloseCode.Unauthorized);
    expect(closed.received).toEqual([]);
    expect(UserAgent.starts.slice(before)).toEqual([]);
  });
});

describe("a connection at a routed address is held to its instance for its whole life", () => {
  it("an in-band refresh is checked against the routed instance, and revoke() closes it 4009", async () => {
    const socket = await connect(wsUrl(server, `/me?token=${await tokenFor("gina")}`));
    const result = (m: unknown) =>
      typeof m === "object" &&
      !Buffer.isBuffer(m) &&
      (m as { type?: string }).type === "outpost_auth_result";
    // A fresh token for the same instance is taken…
    socket.send({ type: "outpost_auth", token: await tokenFor("gina") });
    expect(await socket.waitFor(result)).toMatchObject({ ok: true });
    // …one for another instance is not, and the connection keeps its own.
    socket.received.length = 0;
    socket.send({ type: "outpost_auth", token: await tokenFor("gina", "elsewhere") });
    expect(await socket.waitFor(result)).toMatchObject({ ok: false });
    expect(await socket.rpc("whoami")).toBe("gina");
    expect(await server.revoke({ sub: "gina" })).toBe(1);
    expect((await socket.closed).code).toBe(CloseCode.Revoked);
  });
});

describe("HTTP at a routed address", () => {
  it("reaches the routed instance's onRequest, sub-path included", async () => {
    const token = await tokenFor("dave");
    const response = await fetch(httpUrl(server, `/me/settings?token=${token}`));
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ name: "dave", path: "/me/settings" });
  });

  it("paths the route leaves alone are not Outpost's: serve() answers 404, an upgrade 404", async () => {
    expect((await fetch(httpUrl(server, "/static/app.js"))).status).toBe(404);
    expect(await upgradeStatus(server.port, "/static/socket")).toBe(404);
  });

  it("fetch-style hosts: routeAgentRequest answers routed paths and returns null for the rest", async () => {
    const { outpost, done } = hostedOutpost();
    try {
      await outpost.ready();
      const token = await tokenFor("erin");
      const routed = await outpost.routeAgentRequest(
        new Request(`http://app.test/me?token=${token}`),
      );
      expect(routed?.status).toBe(200);
      expect(await routed?.json()).toEqual({ name: "erin", path: "/me" });
      expect(await outpost.routeAgentRequest(new Request("http://app.test/about"))).toBeNull();
    } finally {
      await done();
    }
  });

  it("node:http hosts: handleRequest takes routed paths and gives the rest back to the app", async () => {
    const http = createServer();
    const { outpost, done } = hostedOutpost(http);
    http.on("request", (req, res) => {
      void outpost.handleRequest(req, res).then((done) => {
        if (!done) res.writeHead(418).end("the app's own");
      });
    });
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    const port = (http.address() as AddressInfo).port;
    try {
      const token = await tokenFor("frank");
      const routed = await fetch(`http://127.0.0.1:${port}/me?token=${token}`);
      expect(await routed.json()).toEqual({ name: "frank", path: "/me" });
      const app = await fetch(`http://127.0.0.1:${port}/about`);
      expect(app.status).toBe(418);
      expect(await app.text()).toBe("the app's own");
      // Upgrades at routed addresses on the app's own server.
      const socket = await connect(`ws://127.0.0.1:${port}/me?token=${token}`);
      expect(await socket.rpc("whoami")).toBe("frank");
      await socket.close();
    } finally {
      await done();
      await new Promise((resolve) => http.close(resolve));
    }
  });
});

describe("a route that fails is the server's bug, not the client's", () => {
  it("a route that throws: 1011 / 500 with no stack or message, logged once", async () => {
    const socket = await refused(wsUrl(server, "/boom"));
    expect(socket.code).toBe(CloseCode.InternalError);
    expect(socket.reason).not.toMatch(/exploded|routes\.ts/);
    const http = await fetch(httpUrl(server, "/boom"));
    expect(http.status).toBe(500);
    const body = await http.text();
    expect(body).not.toMatch(/exploded|routes\.ts|\n\s+at /);
    const logged = logs.lines.filter((line) => line.event === "route_failed");
    expect(logged).toHaveLength(1);
    expect(JSON.stringify(logged[0])).toContain("route exploded");
  });

  it("a route naming an agent the server does not host: 1011, logged with the agents it has", async () => {
    const socket = await refused(wsUrl(server, "/nowhere"));
    expect(socket.code).toBe(CloseCode.InternalError);
    const logged = logs.lines.find(
      (line) => line.event === "route_failed" && String(line.msg).includes("Missing"),
    );
    expect(logged).toMatchObject({ agents: ["user-agent", "other"] });
  });

  it("a route giving an instance name no URL could is refused as a bad name (400)", async () => {
    expect(await upgradeStatus(server.port, "/bad")).toBe(400);
    expect((await fetch(httpUrl(server, "/bad"))).status).toBe(400);
  });

  it("serve() refuses a route that is not a function, at startup", async () => {
    await expect(
      startServer({ UserAgent }, { route: "/me" as unknown as typeof route }),
    ).rejects.toThrow(/`route` must be a function/);
  });
});

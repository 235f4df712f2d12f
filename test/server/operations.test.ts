import { existsSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { createAgentServer, routeAgentRequest } from "../../src/index.js";
import { ChatRoom, Counter, SlowStreamWriter, SlowWriter } from "../fixtures/agents.js";
import { type ChildServer, killChild, spawnCounterServer } from "../helpers/child.js";
import { httpUrl, startServer, type TestServer, tempDir, wsUrl } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";
import { connect, type RawClient, refused } from "../helpers/ws-client.js";

let server: TestServer | undefined;
let child: ChildServer | undefined;
const clients: RawClient[] = [];
const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.ws.terminate();
  await server?.stop();
  server = undefined;
  await killChild(child);
  child = undefined;
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function open(url: string): Promise<RawClient> {
  const client = await connect(url);
  clients.push(client);
  return client;
}

describe("HTTP", () => {
  it("answers GET /healthz", async () => {
    server = await startServer({ Counter });
    await open(wsUrl(server, "/agents/counter/health"));
    const response = await fetch(httpUrl(server, "/healthz"));
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/application\/json/);
    expect(await response.json()).toEqual({ status: "ok", instances: 1, connections: 1 });
  });

  it("passes plain HTTP GET and POST to the agent URL to onRequest", async () => {
    server = await startServer({ Counter });
    const client = await open(wsUrl(server, "/agents/counter/http"));
    await client.rpc("increment", [4]);
    const get = await fetch(httpUrl(server, "/agents/counter/http?x=1"));
    expect(get.status).toBe(200);
    expect(await get.json()).toEqual({ name: "http", method: "GET", count: 4 });
    const post = await fetch(httpUrl(server, "/agents/counter/http"), {
      method: "POST",
      body: JSON.stringify({ hello: "world" }),
    });
    expect(await post.json()).toEqual({ name: "http", method: "POST", count: 4 });
    // An agent without onRequest answers 404.
    expect((await fetch(httpUrl(server, "/agents/chat-room/none"))).status).toBe(404);
    // Paths outside the agents are not the server's.
    expect((await fetch(httpUrl(server, "/somewhere-else"))).status).toBe(404);
  });

  it("refuses a request body over maxBodyBytes with 413", async () => {
    server = await startServer({ Counter }, { maxBodyBytes: 1000 });
    const url = httpUrl(server, "/agents/counter/body");
    expect((await fetch(url, { method: "POST", body: "x".repeat(1000) })).status).toBe(200);
    const tooBig = await fetch(url, { method: "POST", body: "x".repeat(1001) });
    expect(tooBig.status).toBe(413);
    expect(await tooBig.json()).toEqual({ error: "body_too_large" });
    // The unread rest of that body must not poison the connection for later requests.
    const huge = await fetch(url, { method: "POST", body: "x".repeat(200_000) });
    expect(huge.status).toBe(413);
    await huge.body?.cancel();
    for (let i = 0; i < 3; i++) {
      const started = Date.now();
      const next = await fetch(url, {
        method: i === 1 ? "GET" : "POST",
        body: i === 1 ? null : "ok",
      });
      expect(next.status).toBe(200);
      await next.body?.cancel();
      expect(Date.now() - started).toBeLessThan(2_000);
    }
  });

  it("answers fetch-style Requests with routeAgentRequest, and null for other paths", async () => {
    server = await startServer({ Counter });
    const response = await routeAgentRequest(
      new Request("http://app.example/agents/counter/fetchy", { method: "POST", body: "x" }),
      server,
    );
    expect(response).toBeInstanceOf(Response);
    expect(await response!.json()).toEqual({ name: "fetchy", method: "POST", count: 0 });
    expect(await routeAgentRequest(new Request("http://app.example/api/other"), server)).toBeNull();
    const health = await routeAgentRequest(new Request("http://app.example/healthz"), server);
    expect(health!.status).toBe(200);
    const unknown = await routeAgentRequest(new Request("http://app.example/agents/x/y"), server);
    expect(unknown!.status).toBe(404);
  });
});

describe("createAgentServer", () => {
  it("attaches to an existing node:http server: its upgrades and agent requests, the app keeps the rest", async () => {
    const data = tempDir();
    cleanups.push(() => data.remove());
    const http: Server = createServer((req, res) => {
      outpost.handleRequest(req, res).then((handled) => {
        if (!handled) res.writeHead(200, { "content-type": "text/plain" }).end("app");
      });
    });
    const outpost = createAgentServer({
      agents: { Counter },
      server: http,
      dataDir: data.dir,
      logger: false,
    });
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    cleanups.push(
      () => new Promise<void>((resolve) => http.close(() => resolve())),
      () => outpost.close(),
    );
    const { port } = http.address() as AddressInfo;
    const client = await open(`ws://127.0.0.1:${port}/agents/counter/attached`);
    expect(await client.rpc("increment")).toBe(1);
    const agent = await fetch(`http://127.0.0.1:${port}/agents/counter/attached`);
    expect(await agent.json()).toEqual({ name: "attached", method: "GET", count: 1 });
    expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe("app");
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
  });
});

describe("shutdown", () => {
  it("serve().close() sends 1001 to every client and closes every database", async () => {
    server = await startServer({ Counter, ChatRoom });
    const a = await open(wsUrl(server, "/agents/counter/one"));
    const b = await open(wsUrl(server, "/agents/counter/one"));
    const c = await open(wsUrl(server, "/agents/chat-room/two"));
    await a.rpc("increment");
    await c.rpc("post", ["hi"]);
    const files = [
      join(server.dataDir, "counter", "one.sqlite"),
      join(server.dataDir, "chat-room", "two.sqlite"),
      join(server.dataDir, "_outpost", "wakeups.sqlite"),
    ];
    for (const file of files) expect(existsSync(`${file}-wal`)).toBe(true);
    await server.close();
    for (const client of [a, b, c]) {
      expect(await client.closed).toEqual({ code: 1001, reason: "server shutting down" });
    }
    // SQLite removes a WAL file when the last connection to its database closes.
    for (const file of files) {
      expect(existsSync(file)).toBe(true);
      expect(existsSync(`${file}-wal`)).toBe(false);
    }
  });

  it("close() lets running handlers, streaming callables included, finish their writes first", async () => {
    const data = tempDir("outpost-drain-");
    cleanups.push(() => data.remove());
    server = await startServer({ SlowWriter, SlowStreamWriter }, { dataDir: data.dir });
    const plain = await open(wsUrl(server, "/agents/slow-writer/drain"));
    const streaming = await open(wsUrl(server, "/agents/slow-stream-writer/drain"));
    plain.sendCall("slowWrite", [100]);
    streaming.sendCall("slowWriteStream", [300]);
    await streaming.waitFor((m) => JSON.stringify(m).includes('"result":"started"'));
    await server.close();
    server = undefined;
    server = await startServer({ SlowWriter, SlowStreamWriter }, { dataDir: data.dir });
    for (const path of ["/agents/slow-writer/drain", "/agents/slow-stream-writer/drain"]) {
      const client = await open(wsUrl(server, path));
      expect(client.frames("cf_agent_state")[0]).toMatchObject({ state: { writes: 1 } });
    }
  });

  it("on SIGTERM closes every client with 1001, keeps the state and exits 0", async () => {
    const data = tempDir("outpost-sigterm-");
    cleanups.push(() => data.remove());
    child = await spawnCounterServer(data.dir);
    const url = `ws://127.0.0.1:${child.port}/agents/counter/term`;
    const a = await open(url);
    const b = await open(url);
    const c = await open(`ws://127.0.0.1:${child.port}/agents/counter/other`);
    expect(await a.rpc("increment", [7])).toBe(7);
    child.child.kill("SIGTERM");
    for (const client of [a, b, c]) expect((await client.closed).code).toBe(1001);
    expect(await child.exited).toEqual({ code: 0, signal: null });
    child = await spawnCounterServer(data.dir);
    const again = await open(`ws://127.0.0.1:${child.port}/agents/counter/term`);
    expect(again.frames("cf_agent_state")[0]).toMatchObject({ state: { count: 7 } });
  });
});

describe("logging", () => {
  it("writes structured JSON lines to a given pino logger", async () => {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk, _encoding, callback) {
        lines.push(...String(chunk).split("\n").filter(Boolean));
        callback();
      },
    });
    const logger = pino({ level: "debug" }, destination);
    server = await startServer({ Counter }, { logger, maxConnectionsPerInstance: 1 });
    const client = await open(wsUrl(server, "/agents/counter/logs"));
    await client.call("fail", ["it broke"]);
    expect((await refused(wsUrl(server, "/agents/counter/logs?token=s3cret&tag=x"))).code).toBe(
      1013,
    );
    await waitFor(() => lines.some((l) => l.includes("refused")), "the refusal to be logged");

    const records = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    for (const record of records) {
      expect(record).toMatchObject({
        level: expect.any(Number),
        time: expect.any(Number),
        msg: expect.any(String),
      });
    }
    expect(records).toContainEqual(expect.objectContaining({ msg: "listening", url: server.url }));
    const error = records.find((r) => r.msg === "agent error");
    expect(error).toMatchObject({
      level: 50,
      agent: "counter",
      instance: "logs",
      connection: expect.any(String),
      err: expect.objectContaining({ message: "it broke" }),
    });
    const refusal = records.find((r) => r.msg === "refused");
    expect(refusal).toMatchObject({
      level: 40,
      event: "auth_refused",
      code: "too_many_connections",
      closeCode: 1013,
      agent: "counter",
      instance: "logs",
      ip: "127.0.0.1",
    });
    expect(String(refusal!.url)).toContain("token=[redacted]");
    expect(lines.join("\n")).not.toContain("s3cret");
  });
});

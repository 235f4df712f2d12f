import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { agentNameToKebab, CloseCode } from "../../src/index.js";
import { ChatRoom, Counter, MyAgent } from "../fixtures/agents.js";
import { httpUrl, startServer, type TestServer, tempDir, wsUrl } from "../helpers/server.js";
import { connect, refused, upgradeStatus } from "../helpers/ws-client.js";

/** Every file under `dir`, relative to it. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
}

let root: ReturnType<typeof tempDir>;
let dataDir: string;
let server: TestServer;

beforeAll(async () => {
  // The data directory sits inside a root of its own, so a file escaping it would show.
  root = tempDir("outpost-routing-");
  dataDir = join(root.dir, "data");
  mkdirSync(dataDir);
  server = await startServer({ Counter, ChatRoom, MyAgent }, { dataDir });
});

afterAll(async () => {
  await server.stop();
  root.remove();
});

beforeEach(() => {
  Counter.starts = 0;
});

describe("agent URLs", () => {
  it("maps class names to kebab case as Cloudflare does", () => {
    expect(agentNameToKebab("MyAgent")).toBe("my-agent");
    expect(agentNameToKebab("ChatRoom")).toBe("chat-room");
    expect(agentNameToKebab("Counter")).toBe("counter");
  });

  it("serves MyAgent at /agents/my-agent/<name> and ChatRoom at /agents/chat-room/<name>", async () => {
    const my = await connect(wsUrl(server, "/agents/my-agent/alpha"));
    expect(my.frames("cf_agent_identity")[0]).toMatchObject({ agent: "my-agent", name: "alpha" });
    expect(await my.rpc("whoami")).toBe("alpha");
    const chat = await connect(wsUrl(server, "/agents/chat-room/lobby"));
    expect(chat.frames("cf_agent_identity")[0]).toMatchObject({
      agent: "chat-room",
      name: "lobby",
    });
    expect(await chat.rpc("post", ["hi"])).toBe(1);
    await Promise.all([my.close(), chat.close()]);
    // The class name itself is not a route, but the refusal says which one is.
    const byClassName = await refused(wsUrl(server, "/agents/MyAgent/alpha"));
    expect(byClassName).toMatchObject({ code: CloseCode.UnknownAgent, received: [] });
    expect(byClassName.reason).toContain("did you mean my-agent?");
    expect((await refused(wsUrl(server, "/agents/chatroom/lobby"))).code).toBe(
      CloseCode.UnknownAgent,
    );
  });

  it("closes a socket to an unknown agent 4004, naming the agents it has, before any work: no database file, no onStart", async () => {
    const before = filesUnder(dataDir);
    const instances = server.stats().instances;
    for (const path of ["/agents/nope/room", "/agents/counterx/room"]) {
      const closed = await refused(wsUrl(server, path));
      expect(closed).toMatchObject({ code: CloseCode.UnknownAgent, received: [] });
      expect(closed.reason).toContain("this server has: counter, chat-room, my-agent");
    }
    expect(await upgradeStatus(server.port, "/agents/counter")).toBe(404);
    expect(await upgradeStatus(server.port, "/elsewhere/counter/room")).toBe(404);
    expect((await fetch(httpUrl(server, "/agents/nope/room"))).status).toBe(404);
    expect((await fetch(httpUrl(server, "/agents/nope/room"), { method: "POST" })).status).toBe(
      404,
    );
    expect(filesUnder(dataDir)).toEqual(before);
    expect(existsSync(join(dataDir, "nope"))).toBe(false);
    expect(Counter.starts).toBe(0);
    expect(server.stats().instances).toBe(instances);
  });

  it("answers HTTP to an unknown agent with 404 before reading its body", async () => {
    const body = "x".repeat(2 * 1024 * 1024); // over the 1 MiB body limit
    const response = await fetch(httpUrl(server, "/agents/nope/room"), { method: "POST", body });
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({
      error: "unknown_agent",
      message: "unknown agent nope; this server has: counter, chat-room, my-agent",
    });
    const bad = await fetch(httpUrl(server, "/agents/counter/a%2Fb"), { method: "PUT", body });
    expect(bad.status).toBe(400);
    expect(Counter.starts).toBe(0);
  });

  it("URL-decodes the instance name", async () => {
    const client = await connect(wsUrl(server, "/agents/my-agent/hello%20world%3F%C3%A9"));
    expect(client.frames("cf_agent_identity")[0]).toMatchObject({ name: "hello world?é" });
    expect(await client.rpc("whoami")).toBe("hello world?é");
    await client.close();
    const response = await fetch(httpUrl(server, "/agents/counter/caf%C3%A9%20au%20lait"));
    expect(await response.json()).toMatchObject({ name: "café au lait" });
  });

  it("accepts a name of exactly 128 characters", async () => {
    const client = await connect(wsUrl(server, `/agents/my-agent/${"n".repeat(128)}`));
    expect(await client.rpc("whoami")).toBe("n".repeat(128));
    await client.close();
  });

  it("never lets a dot-segment name an instance: `..` resolves as a URL path, to no agent", async () => {
    // The URL standard resolves `.`/`..` segments (also as %2E) before routing, exactly as
    // browsers and fetch do, so `/agents/counter/..` is `/agents/`: not found.
    const before = filesUnder(root.dir);
    for (const raw of ["..", "%2E%2E", ".%2e"]) {
      expect(await upgradeStatus(server.port, `/agents/counter/${raw}`)).toBe(404);
    }
    expect(filesUnder(root.dir)).toEqual(before);
    expect(Counter.starts).toBe(0);
  });

  const badNames: Record<string, string> = {
    dot: ".",
    "dot-dot with a trailing slash": "..%2F",
    "encoded slash": "a%2Fb",
    "encoded traversal": "%2E%2E%2F%2E%2E%2Fescape",
    "encoded backslash": "..%5C..%5Cescape",
    "longer than 128 characters": "n".repeat(129),
    "128 characters once decoded, more than 128 after": "%C3%A9".repeat(129),
    "NUL byte": "a%00b",
    newline: "a%0Ab",
    "DEL character": "a%7Fb",
    "bad percent-encoding": "a%E0%A4%A",
    "lone percent": "100%",
    "invalid UTF-8": "%FF",
  };

  for (const [what, raw] of Object.entries(badNames)) {
    it(`refuses a bad instance name (${what}) with 400 and writes nothing`, async () => {
      const before = filesUnder(root.dir);
      expect(await upgradeStatus(server.port, `/agents/counter/${raw}`)).toBe(400);
      const response = await fetch(httpUrl(server, `/agents/counter/${raw}`));
      // fetch resolves a bare `.` away; what still reaches the router is refused.
      if (raw !== ".") {
        expect(response.status).toBe(400);
        expect(await response.json()).toMatchObject({ error: "bad_instance_name" });
      } else {
        await response.body?.cancel();
      }
      expect(filesUnder(root.dir)).toEqual(before);
      expect(readdirSync(root.dir)).toEqual(["data"]);
      expect(Counter.starts).toBe(0);
    });
  }

  it("routes a socket to a path below the instance (/agents/my-agent/a/b) to instance a, as Cloudflare does", async () => {
    const client = await connect(wsUrl(server, "/agents/my-agent/a/sub/path"));
    expect(client.frames("cf_agent_identity")[0]).toMatchObject({ agent: "my-agent", name: "a" });
    expect(await client.rpc("whoami")).toBe("a");
    await client.close();
    // Dot segments resolve first: this is /agents/b, which names no instance.
    expect(await upgradeStatus(server.port, "/agents/counter/a/../../b")).toBe(404);
    expect(Counter.starts).toBe(0);
  });

  it("passes a sub-path after the instance name to onRequest", async () => {
    const response = await fetch(httpUrl(server, "/agents/my-agent/sub-1/some/sub/path?q=1"));
    expect(await response.json()).toEqual({
      name: "sub-1",
      path: "/agents/my-agent/sub-1/some/sub/path",
    });
  });
});

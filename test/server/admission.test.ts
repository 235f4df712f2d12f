import { randomBytes } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createKeySet, issueToken, type KeySet, tokenAuth } from "../../src/auth/index.js";
import {
  Agent,
  CloseCode,
  type Connection,
  type ConnectionContext,
  callable,
  requestAuth,
} from "../../src/index.js";
import { httpUrl, startServer, type TestServer, wsUrl } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";
import { connect, RawClient, refused } from "../helpers/ws-client.js";

/**
 * The admission road's properties, each over a real socket: slots that never leak,
 * credentials re-checked after a cold start, HTTP refused before its body is read,
 * bounded instances, read-only connections and scopes on every path.
 */

const SECRET = "admission-suite-secret-0123456789abcdef";

/** `onStart` waits for the test to open the gate, so a cold start can last as long as needed. */
class Gated extends Agent<unknown, { count: number }> {
  override initialState = { count: 0 };
  static gate: Promise<void> = Promise.resolve();
  static open: () => void = () => {};
  static entered = 0;
  static messages: string[] = [];

  static close(): void {
    Gated.gate = new Promise((resolve) => {
      Gated.open = resolve;
    });
  }

  override async onStart() {
    Gated.entered++;
    await Gated.gate;
  }

  override shouldConnectionBeReadonly(_connection: Connection, ctx: ConnectionContext) {
    return new URL(ctx.request.url).searchParams.get("ro") === "1";
  }

  override onMessage(_connection: Connection, message: string | Buffer) {
    Gated.messages.push(String(message));
  }

  @callable()
  increment() {
    this.setState({ count: this.state.count + 1 });
    return this.state.count;
  }

  override onRequest(request: Request) {
    return Response.json({ sub: requestAuth(request)?.sub ?? null, count: this.state.count });
  }
}

/** No `onRequest`: every request to it is answered 404 by the base class. */
class Quiet extends Agent {}

let server: TestServer | undefined;
let keys: KeySet;

afterEach(async () => {
  Gated.open();
  await server?.stop();
  server = undefined;
  Gated.gate = Promise.resolve();
  Gated.entered = 0;
  Gated.messages = [];
});

async function start(options: Parameters<typeof startServer>[1] = {}): Promise<TestServer> {
  keys ??= await createKeySet({ secret: SECRET });
  server = await startServer(
    { Gated, Quiet },
    {
      auth: tokenAuth({ keys, singleUse: false, publishJwks: false }),
      ...options,
    },
  );
  return server;
}

function token(options: Partial<Parameters<typeof issueToken>[1]> = {}): Promise<string> {
  return issueToken(keys, { sub: "alice", agent: "gated", name: "room", ...options });
}

function roomUrl(t: string, name = "room", extra = ""): string {
  return wsUrl(server!, `/agents/gated/${name}?token=${encodeURIComponent(t)}${extra}`);
}

/** Send `head` (and optionally more) on a raw TCP socket; resolves with all it got back. */
function rawExchange(port: number, head: string, options: { destroyAfterWrite?: boolean } = {}) {
  return new Promise<string>((resolve) => {
    const socket = tcpConnect(port, "127.0.0.1");
    let text = "";
    socket.on("data", (d) => {
      text += d.toString("latin1");
    });
    socket.on("error", () => resolve(text));
    socket.on("close", () => resolve(text));
    socket.on("connect", () => {
      socket.write(head);
      if (options.destroyAfterWrite) socket.destroy();
    });
    // A handshake that got its answer (or none) is done with after a moment.
    socket.setTimeout(3_000, () => socket.destroy());
  });
}

function upgradeHead(path: string, headers: Record<string, string | undefined>, method = "GET") {
  const lines = [`${method} ${path} HTTP/1.1`, "Host: 127.0.0.1"];
  const all: Record<string, string | undefined> = {
    Connection: "Upgrade",
    Upgrade: "websocket",
    "Sec-WebSocket-Key": randomBytes(16).toString("base64"),
    "Sec-WebSocket-Version": "13",
    ...headers,
  };
  for (const [name, value] of Object.entries(all))
    if (value !== undefined) lines.push(`${name}: ${value}`);
  return `${lines.join("\r\n")}\r\n\r\n`;
}

/** Run `tasks` with at most `limit` in flight. */
async function pool(count: number, limit: number, task: (i: number) => Promise<unknown>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < count) await task(next++);
    }),
  );
}

describe("connection slots never leak", () => {
  it("10,000 handshakes that ws aborts or the client drops never count against maxConnectionsPerInstance", async () => {
    await start({ maxConnectionsPerInstance: 3 });
    const t = await token();
    const path = `/agents/gated/room?token=${encodeURIComponent(t)}`;
    // Warm the instance so every broken handshake reaches the slot check at once.
    const warm = await connect(roomUrl(t));
    await warm.close();
    const broken: Array<() => Promise<string>> = [
      () => rawExchange(server!.port, upgradeHead(path, { "Sec-WebSocket-Key": undefined })),
      () => rawExchange(server!.port, upgradeHead(path, { "Sec-WebSocket-Key": "not-a-key" })),
      () => rawExchange(server!.port, upgradeHead(path, { "Sec-WebSocket-Version": "12" })),
      () => rawExchange(server!.port, upgradeHead(path, {}, "POST")),
      () => rawExchange(server!.port, upgradeHead(path, {}), { destroyAfterWrite: true }),
    ];
    await pool(10_000, 64, (i) => broken[i % broken.length]!());
    const answers = await Promise.all(broken.slice(0, 4).map((send) => send()));
    for (const answer of answers) expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    await waitFor(() => server!.stats().connections === 0, "every socket to be gone");
    // All three slots are still free.
    const clients = await Promise.all([1, 2, 3].map(() => connect(roomUrl(t))));
    for (const client of clients) {
      expect(client.frames("cf_agent_identity")[0]).toMatchObject({ name: "room" });
    }
    const fourth = await refused(roomUrl(t));
    expect(fourth.code).toBe(CloseCode.TryAgainLater);
    await Promise.all(clients.map((c) => c.close()));
    expect(server!.stats().refusals.bad_handshake).toBeGreaterThanOrEqual(8_000);
  }, 120_000);
});

describe("revocation and expiry during a cold start", () => {
  it("closes 4009 before any frame when revoke() runs while onStart is running, and counts it", async () => {
    await start();
    Gated.close();
    const client = new RawClient(roomUrl(await token()));
    await waitFor(() => Gated.entered === 1, "onStart to begin");
    expect(await server!.revoke({ sub: "alice" })).toBe(1);
    Gated.open();
    const closed = await client.closed;
    expect(closed).toMatchObject({ code: CloseCode.Revoked });
    expect(client.received).toEqual([]);
    // And it stays refused.
    expect((await refused(roomUrl(await token()))).code).toBe(CloseCode.Revoked);
  });

  it("closes 4001 before any frame when the token expires while onStart is running", async () => {
    await start();
    Gated.close();
    const client = new RawClient(roomUrl(await token({ ttl: 1 })));
    await waitFor(() => Gated.entered === 1, "onStart to begin");
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    Gated.open();
    const closed = await client.closed;
    expect(closed).toMatchObject({ code: CloseCode.Unauthorized, reason: "token expired" });
    expect(client.received).toEqual([]);
    expect(server!.stats().refusals.token_expired).toBe(1);
  });
});

describe("HTTP refuses before it reads", () => {
  it("answers a locked-out caller at once, before its body", async () => {
    await start({
      auth: tokenAuth({
        keys,
        singleUse: false,
        publishJwks: false,
        rateLimit: { failures: 1, windowMs: 60_000 },
      }),
    });
    const bad = await fetch(httpUrl(server!, "/agents/gated/room?token=nope"));
    expect(bad.status).toBe(401);
    const valid = await token();
    const answer = await rawExchange(
      server!.port,
      `POST /agents/gated/room?token=${valid} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
        `Content-Length: ${1024 * 1024}\r\n\r\n${"x".repeat(1000)}`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 429 /);
    expect(answer.toLowerCase()).toContain("retry-after:");
    expect(Gated.entered).toBe(0);
  });
});

describe("bounded instances", () => {
  it("evicts idle instances first, then refuses new ones with 1013 / 503 and a retry hint, never resetting others", async () => {
    await start({ maxInstances: 2, idleTimeout: 60_000 });
    const t = (name: string) => token({ name });
    const a = await connect(roomUrl(await t("a"), "a"));
    const b = await connect(roomUrl(await t("b"), "b"));
    const c = await refused(roomUrl(await t("c"), "c"));
    expect(c.code).toBe(CloseCode.TryAgainLater);
    expect(c.reason).toMatch(/too many live instances; retry in \d+s/);
    const http = await fetch(httpUrl(server!, `/agents/gated/c?token=${await t("c")}`));
    expect(http.status).toBe(503);
    expect(http.headers.get("retry-after")).toMatch(/^\d+$/);
    // The others were not touched.
    expect(await a.rpc("increment")).toBe(1);
    expect(await b.rpc("increment")).toBe(1);
    // Once a is idle, it makes room for c.
    await a.close();
    await waitFor(() => server!.stats().connections === 1, "a to be gone");
    const c2 = await connect(roomUrl(await t("c"), "c"));
    expect(c2.frames("cf_agent_identity")[0]).toMatchObject({ name: "c" });
    expect(server!.stats().instances).toBe(2);
    expect(await b.rpc("increment")).toBe(2);
    await Promise.all([b.close(), c2.close()]);
  });

  it("leaves no database file behind for a request the agent does not handle", async () => {
    await start();
    const t = await issueToken(keys, { sub: "alice", agent: "quiet", name: "nobody" });
    const response = await fetch(httpUrl(server!, `/agents/quiet/nobody?token=${t}`));
    expect(response.status).toBe(404);
    const dir = join(server!.dataDir, "quiet");
    const files = existsSync(dir) ? readdirSync(dir) : [];
    expect(files).toEqual([]);
  });
});

describe("read-only means read-only", () => {
  it("refuses a callable's setState from a read-only connection with 'Connection is readonly'", async () => {
    await start();
    const t = await token();
    const writer = await connect(roomUrl(t));
    const reader = await connect(roomUrl(t, "room", "&ro=1"));
    const answer = await reader.call("increment");
    expect(answer).toMatchObject({ success: false, error: "Connection is readonly" });
    expect(await writer.rpc("increment")).toBe(1);
    await Promise.all([writer.close(), reader.close()]);
  });
});

describe("scopes on every path", () => {
  it("a connect-only token watches state and nothing else, over either transport", async () => {
    await start();
    const full = await connect(roomUrl(await token()));
    const watcher = await connect(roomUrl(await token({ scope: ["connect"] })));
    expect(watcher.frames("cf_agent_state")[0]).toMatchObject({ state: { count: 0 } });
    expect(await watcher.call("increment")).toMatchObject({ success: false });
    watcher.send({ type: "cf_agent_state", state: { count: 99 } });
    await watcher.waitFor(
      (m) => typeof m === "object" && (m as { type?: string }).type === "cf_agent_state_error",
    );
    watcher.send("hello from a watcher");
    const refusal = await watcher.waitFor(
      (m) => typeof m === "object" && (m as { type?: string }).type === "outpost_refused",
    );
    expect(refusal).toMatchObject({ action: "message" });
    expect(Gated.messages).toEqual([]);
    // It still sees what others do.
    expect(await full.rpc("increment")).toBe(1);
    await watcher.waitFor(
      (m) => typeof m === "object" && (m as { state?: { count?: number } }).state?.count === 1,
    );
    const http = await fetch(
      httpUrl(server!, `/agents/gated/room?token=${await token({ scope: ["connect"] })}`),
    );
    expect(http.status).toBe(403);
    expect(await http.json()).toMatchObject({ error: "scope_mismatch" });
    await Promise.all([full.close(), watcher.close()]);
  });

  it("needs the http scope for onRequest, which reads the caller's verified claims", async () => {
    await start();
    const http = await fetch(
      httpUrl(server!, `/agents/gated/room?token=${await token({ scope: ["http"] })}`),
    );
    expect(http.status).toBe(200);
    expect(await http.json()).toEqual({ sub: "alice", count: 0 });
    const socket = await refused(roomUrl(await token({ scope: ["http"] })));
    expect(socket.code).toBe(CloseCode.Forbidden);
  });

  it("a user frame needs the message scope", async () => {
    await start();
    const talker = await connect(roomUrl(await token({ scope: ["connect", "message"] })));
    talker.send("hi");
    await waitFor(() => Gated.messages.length === 1, "the message to arrive");
    expect(Gated.messages).toEqual(["hi"]);
    await talker.close();
  });
});

describe("the failed-attempt limit cannot be dodged or turned against users", () => {
  it("takes the address from X-Forwarded-For without its port", async () => {
    await start({
      trustProxy: true,
      auth: tokenAuth({
        keys,
        singleUse: false,
        publishJwks: false,
        rateLimit: { failures: 2, windowMs: 60_000 },
      }),
    });
    const attempt = (forwarded: string) =>
      fetch(httpUrl(server!, "/agents/gated/room?token=nope"), {
        headers: { "x-forwarded-for": forwarded },
      }).then((r) => r.status);
    // Three ports of one address are one client: the third attempt is locked out.
    expect(await attempt("203.0.113.7:1111")).toBe(401);
    expect(await attempt("203.0.113.7:2222")).toBe(401);
    expect(await attempt("203.0.113.7:3333")).toBe(429);
    expect(await attempt("[2001:db8::1]:1111")).toBe(401);
    expect(await attempt("[2001:db8::1]:2222")).toBe(401);
    expect(await attempt("2001:db8::1")).toBe(429);
  });

  it("routeAgentRequest without a client address puts callers in no shared bucket", async () => {
    await start({
      auth: tokenAuth({
        keys,
        singleUse: false,
        publishJwks: false,
        rateLimit: { failures: 2, windowMs: 60_000 },
      }),
    });
    for (let i = 0; i < 5; i++) {
      const response = await server!.routeAgentRequest(
        new Request("http://x/agents/gated/room?token=nope"),
      );
      expect(response?.status).toBe(401);
    }
    const good = await server!.routeAgentRequest(
      new Request(`http://x/agents/gated/room?token=${await token()}`),
    );
    expect(good?.status).toBe(200);
  });
});

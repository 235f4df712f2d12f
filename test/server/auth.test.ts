import { randomBytes } from "node:crypto";
import { request } from "node:http";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createKeySet, issueToken, type KeySet, tokenAuth } from "../../src/auth/index.js";
import { Agent, type Connection, callable, getCurrentAgent } from "../../src/index.js";
import { assemble, claims, signRaw } from "../auth/forge.js";
import { startServer, type TestServer, wsUrl } from "../helpers/server.js";
import { nextSecond, waitFor } from "../helpers/wait.js";
import { connect, RawClient, refused } from "../helpers/ws-client.js";

/** Records what agent code saw of the caller's credentials. */
class Chat extends Agent<unknown, { messages: string[] }> {
  override initialState = { messages: [] as string[] };
  static starts = 0;
  static connectAuth: unknown[] = [];

  override onStart() {
    Chat.starts++;
  }

  override onConnect(connection: Connection) {
    Chat.connectAuth.push(connection.auth);
  }

  @callable()
  whoami() {
    return getCurrentAgent().connection?.auth?.sub ?? null;
  }

  @callable()
  post(text: string) {
    this.setState({ messages: [...this.state.messages, text] });
    return this.state.messages.length;
  }
}

class Counter extends Agent<unknown, { count: number }> {
  override initialState = { count: 0 };
}

const SECRET = "socket-auth-suite-secret-0123456789abcdef";

describe("authentication over a real socket", () => {
  let keys: KeySet;
  let rsaKeys: KeySet;
  let server: TestServer;
  const token = (options: Partial<Parameters<typeof issueToken>[1]> = {}, set: KeySet = keys) =>
    issueToken(set, { sub: "user-1", agent: "chat", name: "room-1", ...options });
  const url = (t: string, name = "room-1", agent = "chat") =>
    wsUrl(server, `/agents/${agent}/${name}?token=${encodeURIComponent(t)}`);

  beforeAll(async () => {
    keys = await createKeySet({ secret: SECRET });
    rsaKeys = await createKeySet({ algorithm: "RS256" });
    server = await startServer(
      { Chat, Counter },
      {
        auth: tokenAuth({ keys, singleUse: false, rateLimit: false, publishJwks: false }),
      },
    );
  });

  afterAll(async () => {
    await server?.stop();
  });

  describe("refusal matrix: each closes with its code, sends no frame and starts no agent", () => {
    const cases: Array<[string, () => Promise<string>, number, string]> = [
      [
        "alg none",
        async () => assemble({ alg: "none", typ: "JWT" }, claims({ agent: "chat" })),
        4001,
        "algorithm_not_allowed",
      ],
      [
        "HS256 signed with an RSA public key (algorithm confusion)",
        async () => {
          const jwks = await rsaKeys.jwks();
          const publicPem = JSON.stringify(jwks.keys[0]);
          return new SignJWT(claims({ agent: "chat" }))
            .setProtectedHeader({ alg: "HS256", kid: keys.signingKid })
            .sign(new TextEncoder().encode(publicPem));
        },
        4001,
        "signature_invalid",
      ],
      [
        "wrong secret",
        async () =>
          issueToken(
            await createKeySet({
              secret: "another-secret-entirely-0123456789abcdef",
              kid: keys.signingKid,
            }),
            {
              sub: "user-1",
              agent: "chat",
              name: "room-1",
            },
          ),
        4001,
        "signature_invalid",
      ],
      ["truncated", async () => (await token()).slice(0, -10), 4001, "token_malformed"],
      ["non-base64", async () => "!!!.@@@.###", 4001, "token_malformed"],
      ["non-JSON payload", async () => signRaw(keys, "not json at all"), 4001, "token_malformed"],
      [
        "missing exp",
        async () => signRaw(keys, claims({ agent: "chat", exp: undefined })),
        4001,
        "token_malformed",
      ],
      [
        "expired",
        async () => signRaw(keys, claims({ agent: "chat", iat: 1000, nbf: 1000, exp: 1060 })),
        4001,
        "token_expired",
      ],
      [
        "nbf in the future",
        async () => {
          const t = Math.floor(Date.now() / 1000) + 600;
          return signRaw(keys, claims({ agent: "chat", iat: t, nbf: t, exp: t + 60 }));
        },
        4001,
        "token_not_yet_valid",
      ],
      [
        "lifetime over the maximum",
        async () => {
          const t = Math.floor(Date.now() / 1000);
          return signRaw(keys, claims({ agent: "chat", iat: t, nbf: t, exp: t + 7200 }));
        },
        4001,
        "lifetime_too_long",
      ],
      ["wrong aud", async () => token({ audience: "someone-else" }), 4001, "audience_mismatch"],
      ["wrong name", async () => token({ name: "room-2" }), 4003, "scope_mismatch"],
      ["wrong agent", async () => token({ agent: "counter" }), 4003, "scope_mismatch"],
      [
        "unknown kid",
        async () => signRaw(keys, claims({ agent: "chat" }), { kid: "0000000000000000" }),
        4001,
        "unknown_key",
      ],
      [
        "a token over 4 KiB",
        async () => `${await token()}${"A".repeat(5 * 1024)}`,
        4001,
        "token_malformed",
      ],
    ];

    for (const [label, make, code, reason] of cases) {
      it(`refuses ${label} with ${code} (${reason})`, async () => {
        const starts = Chat.starts;
        const before = server.stats().refusals[reason] ?? 0;
        const closed = await refused(url(await make()));
        expect(closed.code).toBe(code);
        expect(closed.received).toEqual([]);
        expect(Chat.starts).toBe(starts);
        expect(server.stats().refusals[reason]).toBe(before + 1);
      });
    }

    it("refuses a token in the query and the Authorization header at once", async () => {
      const t = await token();
      const client = new RawClient(url(t), { headers: { authorization: `Bearer ${t}` } });
      const closed = await client.closed;
      expect(closed.code).toBe(4001);
      expect(client.received).toEqual([]);
    });

    it("refuses an 8 KiB+ token in the URL at the door (HTTP 414), before any verification", async () => {
      const starts = Chat.starts;
      const client = new RawClient(url(`${await token()}${"A".repeat(8 * 1024)}`));
      const status = await new Promise<number>((resolve) => {
        client.ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      });
      expect(status).toBe(414);
      expect(client.received).toEqual([]);
      expect(Chat.starts).toBe(starts);
    });

    it("refuses a connection with no token at all", async () => {
      const closed = await refused(wsUrl(server, "/agents/chat/room-1"));
      expect(closed).toMatchObject({ code: 4001 });
      expect(closed.received).toEqual([]);
    });
  });

  it("a token for chat/room-1 opens chat/room-1 only", async () => {
    const t = await token();
    const ok = await connect(url(t));
    expect((await refused(url(t, "room-2"))).code).toBe(4003);
    expect((await refused(url(t, "room-1", "counter"))).code).toBe(4003);
    ok.ws.close();
  });

  it("a wildcard is explicit: name `room-*` opens room-7 but not lobby", async () => {
    const t = await token({ name: "room-*" });
    const ok = await connect(url(t, "room-7"));
    expect((await refused(url(t, "lobby"))).code).toBe(4003);
    ok.ws.close();
  });

  it("puts the verified claims on connection.auth in onConnect and in callables", async () => {
    const client = await connect(url(await token({ sub: "alice" })));
    expect(Chat.connectAuth.at(-1)).toMatchObject({ sub: "alice", agent: "chat", name: "room-1" });
    expect(await client.rpc("whoami")).toBe("alice");
    client.ws.close();
  });

  it("refuses RPC and state writes the token's scope does not grant, without closing", async () => {
    const client = await connect(url(await token({ scope: "connect" })));
    const answer = await client.call("post", ["hi"]);
    expect(answer).toMatchObject({ success: false });
    client.send({ type: "cf_agent_state", state: { messages: ["forged"] } });
    const error = await client.waitFor(
      (m) => typeof m === "object" && !Buffer.isBuffer(m) && m.type === "cf_agent_state_error",
    );
    expect(error).toMatchObject({ type: "cf_agent_state_error" });
    expect(client.ws.readyState).toBe(1);
    client.ws.close();
  });

  it("closes a connection 4001 when its token expires, unless it was refreshed in-band", async () => {
    await nextSecond();
    const stale = await connect(url(await token({ ttl: 2 })));
    const fresh = await connect(url(await token({ ttl: 2 })));
    fresh.send({ type: "outpost_auth", token: await token({ ttl: 60 }) });
    const ack = await fresh.waitFor(
      (m) => typeof m === "object" && !Buffer.isBuffer(m) && m.type === "outpost_auth_result",
    );
    expect(ack).toMatchObject({ ok: true });
    expect((await stale.closed).code).toBe(4001);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(fresh.ws.readyState).toBe(1);
    expect(await fresh.rpc("whoami")).toBe("user-1");
    fresh.ws.close();
  });

  it("answers a refresh for another subject with an error frame and keeps the old identity", async () => {
    const client = await connect(url(await token({ sub: "alice" })));
    client.send({ type: "outpost_auth", token: await token({ sub: "mallory" }) });
    const answer = await client.waitFor(
      (m) => typeof m === "object" && !Buffer.isBuffer(m) && m.type === "outpost_auth_result",
    );
    expect(answer).toMatchObject({ ok: false, code: "subject_mismatch" });
    expect(await client.rpc("whoami")).toBe("alice");
    client.ws.close();
  });

  it("revoking a subject closes its live connections 4009 and leaves others open", async () => {
    const bob = await connect(url(await token({ sub: "bob" })));
    const carol = await connect(url(await token({ sub: "carol" })));
    expect(await server.revoke({ sub: "bob" })).toBe(1);
    expect((await bob.closed).code).toBe(4009);
    expect(carol.ws.readyState).toBe(1);
    carol.ws.close();
  });

  it("never echoes a token sent as a subprotocol back in the handshake", async () => {
    const t = await token();
    const headers = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const req = request({
        host: "127.0.0.1",
        port: server.port,
        path: "/agents/chat/room-1",
        headers: {
          Connection: "Upgrade",
          Upgrade: "websocket",
          "Sec-WebSocket-Key": randomBytes(16).toString("base64"),
          "Sec-WebSocket-Version": "13",
          "Sec-WebSocket-Protocol": `outpost.bearer.${t}`,
        },
      });
      req.on("upgrade", (res, socket) => {
        socket.destroy();
        resolve(res.headers);
      });
      req.on("response", (res) => {
        res.resume();
        resolve(res.headers);
      });
      req.on("error", reject);
      req.end();
    });
    expect(JSON.stringify(headers)).not.toContain(t);
  });

  it("accepts the token as the outpost.bearer subprotocol next to `outpost`", async () => {
    const t = await token({ sub: "proto-user" });
    const client = await connect(wsUrl(server, "/agents/chat/room-1"), {
      protocols: ["outpost", `outpost.bearer.${t}`],
    });
    expect(client.frames()[0]).toMatchObject({ type: "cf_agent_identity", agent: "chat" });
    expect(client.ws.protocol).toBe("outpost");
    await client.close();
  });
});

describe("authentication options over HTTP", () => {
  let keys: KeySet;
  let server: TestServer;

  beforeAll(async () => {
    keys = await createKeySet({ algorithm: "EdDSA" });
    server = await startServer(
      { Chat },
      { auth: tokenAuth({ keys, rejectWith: "http", publishJwks: true, rateLimit: false }) },
    );
  });

  afterAll(async () => {
    await server?.stop();
  });

  it("refuses the upgrade with HTTP 401 when configured to", async () => {
    const client = new RawClient(wsUrl(server, "/agents/chat/room-1?token=nope"));
    const status = await new Promise<number>((resolve) => {
      client.ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
    });
    expect(status).toBe(401);
    expect(client.received).toEqual([]);
  });

  it("publishes the public JWKS at /.well-known/jwks.json", async () => {
    const response = await fetch(`${server.url}/.well-known/jwks.json`);
    expect(response.status).toBe(200);
    const jwks = (await response.json()) as { keys: Array<Record<string, unknown>> };
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).toMatchObject({ kid: keys.signingKid, kty: "OKP" });
    expect(jwks.keys[0]).not.toHaveProperty("d");
  });

  it("authenticates plain HTTP to an agent with a Bearer token", async () => {
    const unauthorized = await fetch(`${server.url}/agents/chat/room-1`);
    expect(unauthorized.status).toBe(401);
    const t = await issueToken(keys, { sub: "u", agent: "chat", name: "room-1" });
    const ok = await fetch(`${server.url}/agents/chat/room-1`, {
      headers: { authorization: `Bearer ${t}` },
    });
    expect(ok.status).toBe(404); // Chat has no onRequest: the agent answered, not the guard.
    await waitFor(() => server.stats().instances === 1);
  });
});

import { existsSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import fc from "fast-check";
import { SignJWT } from "jose";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type AuthErrorCode,
  createKeySet,
  issueToken,
  type KeySet,
  REASONS,
  sessionCookie,
  tokenAuth,
} from "../../src/auth/index.js";
import { assemble, claims, signRaw } from "../auth/forge.js";
import { nextSecond, waitFor } from "../helpers/wait.js";
import { connect, RawClient, refused } from "../helpers/ws-client.js";
import { Flaky, Ledger } from "./fixtures.js";
import { startServer, wsUrl } from "./helpers.js";

/**
 * The claims of SECURITY.md that involve credentials, each proven over a real socket
 * against the real `tokenAuth` policy. Every test speaks from its own client address
 * (`X-Forwarded-For` behind `trustProxy`), so the failure rate limit of one test does not
 * spill into another.
 */

const SECRET = "reliability-suite-secret-0123456789abcdef";
const OTHER_SECRET = "an-attacker-guessed-this-secret-0123456789";
const APP_ORIGIN = "https://app.example";

/** Every log line the server writes, as text. */
class LogSink extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    this.lines.push(chunk.toString());
    done();
  }
  get text(): string {
    return this.lines.join("");
  }
}

let nextAddress = 1;
/** A fresh client address for one test. */
function address(): { headers: Record<string, string> } {
  const n = nextAddress++;
  return { headers: { "x-forwarded-for": `10.77.${n >> 8}.${n & 255}` } };
}

describe("security claims (auth)", () => {
  let keys: KeySet;
  let server: Awaited<ReturnType<typeof startServer>>;
  const logs = new LogSink();
  const cookie = sessionCookie({ secret: SECRET, secure: false });
  const token = (name: string, extra: Partial<Parameters<typeof issueToken>[1]> = {}) =>
    issueToken(keys, { sub: "alice", agent: "ledger", name, ...extra });
  const url = (name: string, t?: string) =>
    wsUrl(server, `/agents/ledger/${name}${t === undefined ? "" : `?token=${t}`}`);

  beforeAll(async () => {
    keys = await createKeySet({ secret: SECRET });
    server = await startServer(
      { Ledger, Flaky },
      {
        trustProxy: true,
        logger: pino({ level: "debug" }, logs),
        auth: tokenAuth({
          keys,
          cookie,
          allowedOrigins: [APP_ORIGIN],
          rateLimit: { failures: 10, windowMs: 60_000 },
        }),
      },
    );
  });

  afterAll(async () => {
    await server?.stop();
  });

  it("a refused connection receives no frame, runs no agent code and opens no database", async () => {
    const attempts = Flaky.attempts;
    const forged = await new SignJWT({ agent: "flaky", name: "vault", scope: "connect rpc" })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("mallory")
      .setAudience("outpost")
      .setIssuer("outpost")
      .setIssuedAt()
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode(OTHER_SECRET));
    const header = Buffer.from('{"alg":"none","typ":"JWT"}').toString("base64url");
    const body = Buffer.from(
      JSON.stringify({ sub: "mallory", agent: "flaky", name: "vault", exp: 2e9 }),
    ).toString("base64url");
    const cases = ["", "garbage", "a.b.c", forged, `${header}.${body}.`];
    const from = address();
    for (const t of cases) {
      const closed = await refused(
        wsUrl(server, `/agents/flaky/vault${t === "" ? "" : `?token=${t}`}`),
        from,
      );
      expect(closed.code, t).toBe(4001);
      expect(closed.received, t).toEqual([]);
    }
    expect(Flaky.attempts).toBe(attempts);
    expect(existsSync(join(server.dataDir, "flaky"))).toBe(false);
    expect(server.stats().instances).toBe(0);
  });

  it("a refusal does not reveal whether the instance exists", async () => {
    const from = address();
    const owner = await connect(url("exists", await token("exists")), from);
    const forExisting = await refused(url("exists", "garbage"), from);
    const forMissing = await refused(url("never-created", "garbage"), from);
    expect(forExisting).toEqual(forMissing);
    const wrongScope = await token("somewhere-else");
    expect(await refused(url("exists", wrongScope), from)).toEqual(
      await refused(url("never-created", wrongScope), from),
    );
    await owner.close();
  });

  it("a token opens only the agent and instance it names, with only the scopes it grants", async () => {
    const from = address();
    const forA = await token("room-a");
    expect((await refused(url("room-b", forA), from)).code).toBe(4003);
    expect((await refused(wsUrl(server, `/agents/flaky/room-a?token=${forA}`), from)).code).toBe(
      4003,
    );
    const readOnly = await connect(
      url("room-a", await token("room-a", { scope: "connect" })),
      from,
    );
    const call = await readOnly.call("add", ["x"]);
    expect(call).toMatchObject({ success: false });
    readOnly.ws.send(JSON.stringify({ type: "cf_agent_state", state: { hacked: true } }));
    await waitFor(
      () => readOnly.frames("cf_agent_state_error").length > 0,
      "state write refusal",
      2_000,
    );
    await readOnly.close();
    const full = await connect(url("room-a", forA), from);
    expect(await full.rpc("get", ["x"])).toBe(0);
    await full.close();
  });

  it("a token sent in two places, or living longer than maxLifetime, is refused; weak setups do not start", async () => {
    const from = address();
    const t = await token("narrow");
    const twice = await refused(url("narrow", t), {
      headers: { ...from.headers, authorization: `Bearer ${t}` },
    });
    expect(twice).toMatchObject({ code: 4001, received: [] });
    const longLived = await token("narrow", { ttl: 2 * 3600 });
    expect((await refused(url("narrow", longLived), from)).code).toBe(4001);
    await expect(createKeySet({ secret: "too-short" })).rejects.toThrow();
    expect(() => tokenAuth({ keys, cookie })).toThrow(/allowedOrigins/);
  });

  it("a leaked single-use ticket cannot be replayed", async () => {
    const singleUse = await startServer(
      { Ledger },
      { trustProxy: true, auth: tokenAuth({ keys, singleUse: true }) },
    );
    try {
      const ticket = await issueToken(keys, { sub: "alice", agent: "ledger", name: "t", ttl: 60 });
      const first = await connect(wsUrl(singleUse, `/agents/ledger/t?token=${ticket}`));
      const replay = await refused(wsUrl(singleUse, `/agents/ledger/t?token=${ticket}`));
      expect(replay).toMatchObject({ code: 4001, received: [] });
      // The legitimate connection is unaffected by the replay attempt.
      expect(await first.rpc("get", ["x"])).toBe(0);
      await first.close();
    } finally {
      await singleUse.stop();
    }
  });

  it("logs never contain the token, whichever way it was sent or refused", async () => {
    const from = address();
    const good = await token("logs");
    const expired = await token("logs", { ttl: 1 });
    const wrongRoom = await token("elsewhere");
    const signature = (t: string) => t.split(".")[2]!;
    const seen: string[] = [good, expired, wrongRoom];
    // Accepted with the token in the query; agent code sees the URL redacted.
    const viaQuery = await connect(url("logs", good), from);
    expect(await viaQuery.rpc("whoami")).toEqual({
      sub: "alice",
      uri: expect.stringContaining("token=[redacted]"),
    });
    // In-band refresh, good and bad.
    const refreshed = await token("logs");
    seen.push(refreshed);
    viaQuery.ws.send(JSON.stringify({ type: "outpost_auth", token: refreshed }));
    viaQuery.ws.send(JSON.stringify({ type: "outpost_auth", token: wrongRoom }));
    await waitFor(
      () => viaQuery.frames("outpost_auth_result").length === 2,
      "refresh answers",
      2_000,
    );
    await viaQuery.close();
    // Accepted as a subprotocol.
    const viaProtocol = new RawClient(url("logs"), {
      ...from,
      protocols: ["outpost", `outpost.bearer.${good}`],
    });
    await viaProtocol.opened.catch(() => {});
    viaProtocol.terminate();
    // Refused: wrong instance, expired, tampered.
    await refused(url("logs", wrongRoom), from);
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await refused(url("logs", expired), from);
    const tampered = `${good.slice(0, -4)}AAAA`;
    seen.push(tampered);
    await refused(url("logs", tampered), from);
    await waitFor(() => logs.text.includes('"auth_refused"'), "refusal log lines", 2_000);
    for (const t of seen) {
      expect(logs.text).not.toContain(t);
      expect(logs.text).not.toContain(signature(t));
    }
    const refusals = logs.lines.filter((l) => l.includes('"auth_refused"'));
    expect(refusals.length).toBeGreaterThanOrEqual(3);
    for (const line of refusals) {
      const entry = JSON.parse(line) as { url?: string; fingerprint?: string };
      if (entry.url?.includes("token=")) expect(entry.url).toContain("token=[redacted]");
    }
    expect(refusals.some((l) => JSON.parse(l).fingerprint !== undefined)).toBe(true);
  });

  it("another origin cannot use a visitor's session cookie (cross-site WebSocket hijacking)", async () => {
    const from = address();
    const setCookie = await cookie.issue({ sub: "alice", agent: "ledger", name: "inbox" });
    const cookieHeader = setCookie.split(";")[0]!;
    const foreign = await refused(url("inbox"), {
      headers: { ...from.headers, cookie: cookieHeader, origin: "https://evil.example" },
    });
    expect(foreign).toMatchObject({ code: 4003, received: [] });
    // No Origin at all (not a browser) is no excuse for a cookie either.
    const bare = await refused(url("inbox"), {
      headers: { ...from.headers, cookie: cookieHeader },
    });
    expect(bare.code).toBe(4003);
    const same = await connect(url("inbox"), {
      headers: { ...from.headers, cookie: cookieHeader, origin: APP_ORIGIN },
    });
    expect(await same.rpc("whoami")).toMatchObject({ sub: "alice" });
    await same.close();
  });

  it("a token presented from a foreign browser origin is refused when origins are listed", async () => {
    const from = address();
    const t = await token("origin");
    const foreign = await refused(url("origin", t), {
      headers: { ...from.headers, origin: "https://evil.example" },
    });
    expect(foreign).toMatchObject({ code: 4003, received: [] });
    const app = await connect(url("origin", t), {
      headers: { ...from.headers, origin: APP_ORIGIN },
    });
    await app.close();
  });

  it("a flood of bad tokens from one address is cut off with 4008; other addresses still connect", async () => {
    const attacker = address();
    const codes: Record<number, number> = {};
    const started = Date.now();
    let lastReason = "";
    for (let i = 0; i < 200; i++) {
      const closed = await refused(url("flood", `bad.${i}.token`), attacker);
      codes[closed.code] = (codes[closed.code] ?? 0) + 1;
      if (closed.code === 4008) lastReason = closed.reason;
      expect(closed.received).toEqual([]);
    }
    const elapsed = Date.now() - started;
    expect(codes[4001]).toBe(10);
    expect(codes[4008]).toBe(190);
    expect(lastReason).toMatch(/retry in \d+s/);
    // The attacker's address is refused even with a valid token until its window ends.
    const good = await token("flood");
    expect((await refused(url("flood", good), attacker)).code).toBe(4008);
    // Another address connects at once.
    const other = await connect(url("flood", good), address());
    expect(await other.rpc("get", ["x"])).toBe(0);
    await other.close();
    console.log(`200 bad tokens from one address in ${elapsed} ms: ${JSON.stringify(codes)}`);
  });

  it("without trustProxy, rotating X-Forwarded-For does not dodge the limit; another real address connects", async () => {
    const direct = await startServer(
      { Ledger },
      { auth: tokenAuth({ keys, rateLimit: { failures: 5, windowMs: 60_000 } }) },
    );
    try {
      const codes: number[] = [];
      for (let i = 0; i < 10; i++) {
        const closed = await refused(wsUrl(direct, `/agents/ledger/x?token=bad${i}`), {
          headers: { "x-forwarded-for": `192.0.2.${i}` },
          localAddress: "127.0.0.1",
        });
        codes.push(closed.code);
      }
      expect(codes.filter((c) => c === 4008).length).toBe(5);
      const good = await token("x");
      const other = await connect(wsUrl(direct, `/agents/ledger/x?token=${good}`), {
        localAddress: "127.0.0.2",
      });
      expect(await other.rpc("get", ["k"])).toBe(0);
      await other.close();
    } finally {
      await direct.stop();
    }
  });

  it("behind an appending proxy, a client-supplied X-Forwarded-For prefix does not dodge the limit", async () => {
    // nginx's $proxy_add_x_forwarded_for and most proxies append the address they saw to
    // whatever the client sent: only the last entry is the proxy's word.
    const real = address().headers["x-forwarded-for"]!;
    const codes: number[] = [];
    for (let i = 0; i < 15; i++) {
      const closed = await refused(url("proxied", `bad${i}`), {
        headers: { "x-forwarded-for": `203.0.113.${i}, ${real}` },
      });
      codes.push(closed.code);
    }
    expect(codes.filter((c) => c === 4008).length).toBe(5);
  });

  it("revocation closes live connections 4009 and refuses the token afterwards", async () => {
    const from = address();
    const t = await issueToken(keys, { sub: "bob", agent: "ledger", name: "rev" });
    const live = await connect(url("rev", t), from);
    expect(await server.revoke({ sub: "bob" })).toBe(1);
    expect((await live.closed).code).toBe(4009);
    expect([4001, 4009]).toContain((await refused(url("rev", t), from)).code);
  });

  it("an expiring token closes its connection 4001; refresh cannot switch identity", async () => {
    const from = address();
    await nextSecond();
    const short = await token("exp", { ttl: 2 });
    const client = await connect(url("exp", short), from);
    const otherUser = await issueToken(keys, { sub: "mallory", agent: "ledger", name: "exp" });
    const answer = new Promise((resolve) =>
      client.ws.on("message", (data) => {
        const frame = JSON.parse(data.toString());
        if (frame.type === "outpost_auth_result") resolve(frame);
      }),
    );
    client.ws.send(JSON.stringify({ type: "outpost_auth", token: otherUser }));
    expect(await answer).toMatchObject({ ok: false, code: "subject_mismatch" });
    expect(await client.rpc("whoami")).toMatchObject({ sub: "alice" });
    const closed = await client.closed;
    expect(closed.code).toBe(4001);
  });

  it("fuzzed outpost_auth frames never change identity or crash the connection", async () => {
    const from = address();
    // Its own server: every bad refresh counts as a failed attempt for the address.
    const fuzzServer = await startServer(
      { Ledger },
      { auth: tokenAuth({ keys, rateLimit: false }) },
    );
    try {
      const good = await token("fuzz");
      const client = await connect(wsUrl(fuzzServer, `/agents/ledger/fuzz?token=${good}`), from);
      const mutated = fc.oneof(
        fc.string({ maxLength: 300 }),
        fc.constantFrom(
          `${good.split(".").slice(0, 2).join(".")}.`,
          `${good}.x`,
          good.toUpperCase(),
        ),
        fc
          .tuple(fc.nat({ max: good.length - 1 }), fc.constantFrom("A", "_", "-", "."))
          .map(([i, c]) => good.slice(0, i) + c + good.slice(i + 1))
          .filter((t) => t !== good),
      );
      let answers = 0;
      await fc.assert(
        fc.asyncProperty(mutated, async (t) => {
          const before = client.counts.outpost_auth_result ?? 0;
          client.ws.send(JSON.stringify({ type: "outpost_auth", token: t }));
          const who = await client.rpc<{ sub: string }>("whoami");
          expect(who.sub).toBe("alice");
          answers += (client.counts.outpost_auth_result ?? 0) - before;
        }),
        { numRuns: 150, seed: 11 },
      );
      expect(client.ws.readyState).toBe(1);
      const results = client.frames("outpost_auth_result");
      expect(results.every((f) => f.ok === false)).toBe(true);
      expect(answers).toBeGreaterThan(100);
      await client.close();
    } finally {
      await fuzzServer.stop();
    }
  });
});

/**
 * The refusal matrix: one named case per reason a credential is refused, each over a real
 * socket, each expecting the close code the reasons table gives for its code, with nothing
 * sent before the close and the refusal counted under that code.
 */
describe("refusal matrix", () => {
  let keys: KeySet;
  let server: Awaited<ReturnType<typeof startServer>>;

  beforeAll(async () => {
    keys = await createKeySet({ secret: SECRET });
    const auth = tokenAuth({
      keys,
      allowedOrigins: [APP_ORIGIN],
      rateLimit: { failures: 3, windowMs: 60_000 },
    });
    server = await startServer({ Ledger }, { trustProxy: true, auth });
  });

  afterAll(async () => {
    await server?.stop();
  });

  const room = { agent: "ledger", name: "matrix" };
  const signed = (overrides: Record<string, unknown>, header: Record<string, unknown> = {}) =>
    signRaw(keys, claims({ ...room, ...overrides }), header);
  const now = () => Math.floor(Date.now() / 1000);

  interface Case {
    token?: () => Promise<string>;
    headers?: Record<string, string>;
    /** Something to do first, from the same address. */
    before?: (url: string, headers: Record<string, string>) => Promise<void>;
  }
  const cases: Array<[AuthErrorCode, string, Case]> = [
    ["token_missing", "no token anywhere", {}],
    ["token_malformed", "not a JWT", { token: async () => "garbage" }],
    [
      "signature_invalid",
      "signed with another secret",
      {
        token: async () =>
          new SignJWT({ ...room, sub: "mallory" })
            .setProtectedHeader({ alg: "HS256" })
            .setAudience("outpost")
            .setIssuer("outpost")
            .setIssuedAt()
            .setExpirationTime("5m")
            .sign(new TextEncoder().encode(OTHER_SECRET)),
      },
    ],
    [
      "token_expired",
      "exp in the past",
      { token: () => signed({ iat: now() - 120, nbf: now() - 120, exp: now() - 60 }) },
    ],
    ["token_not_yet_valid", "nbf in the future", { token: () => signed({ nbf: now() + 600 }) }],
    [
      "lifetime_too_long",
      "lives longer than maxLifetime",
      { token: () => signed({ exp: now() + 7200 }) },
    ],
    ["audience_mismatch", "another audience", { token: () => signed({ aud: "billing" }) }],
    ["issuer_mismatch", "another issuer", { token: () => signed({ iss: "https://evil.example" }) }],
    ["scope_mismatch", "another instance", { token: () => signed({ name: "elsewhere" }) }],
    ["scope_mismatch", "no connect scope", { token: () => signed({ scope: "rpc state:write" }) }],
    [
      "algorithm_not_allowed",
      "alg none",
      { token: async () => assemble({ alg: "none", typ: "JWT" }, claims({ ...room, sub: "eve" })) },
    ],
    [
      "unknown_key",
      "a kid the key set does not have",
      { token: () => signed({}, { kid: "nope" }) },
    ],
    [
      "token_ambiguous",
      "a token in the query and in the Authorization header",
      { token: () => signed({}), headers: { authorization: "Bearer also-a-token" } },
    ],
    [
      "origin_not_allowed",
      "a foreign browser origin",
      { token: () => signed({}), headers: { origin: "https://evil.example" } },
    ],
    [
      "token_revoked",
      "a revoked token id",
      {
        token: async () => {
          await server.revoke({ jti: "matrix-revoked" });
          return signed({ jti: "matrix-revoked" });
        },
      },
    ],
    [
      "too_many_attempts",
      "after three failures from the same address",
      {
        token: () => signed({}),
        before: async (url, headers) => {
          for (let i = 0; i < 3; i++) await refused(`${url}?token=garbage`, { headers });
        },
      },
    ],
  ];

  let nextMatrixAddress = 1;
  it.each(cases)("%s: %s", async (code, _name, { token, headers = {}, before }) => {
    const from = { "x-forwarded-for": `10.88.0.${nextMatrixAddress++}`, ...headers };
    const url = wsUrl(server, `/agents/ledger/${room.name}`);
    await before?.(url, from);
    const counted = server.stats().refusals[code] ?? 0;
    const t = token === undefined ? undefined : await token();
    const closed = await refused(t === undefined ? url : `${url}?token=${t}`, { headers: from });
    expect(closed.code).toBe(REASONS[code].closeCode);
    expect(closed.received).toEqual([]);
    expect(server.stats().refusals[code]).toBe(counted + 1);
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createKeySet,
  issueToken,
  type KeySet,
  MemoryReplayStore,
  REASONS,
  tokenAuth,
} from "../../src/auth/index.js";
import { Counter } from "../fixtures/agents.js";
import { httpUrl, startServer, type TestServer, wsUrl } from "../helpers/server.js";
import { connect, refused } from "../helpers/ws-client.js";
import { claims, signRaw } from "./forge.js";

/**
 * Properties of the auth layer that a client sees over a real socket: precise reasons,
 * scopes on every path, origin refusals that cannot lock a user out, single-use tickets
 * that never fail open, revocation that beats clock skew.
 */

const APP = "https://app.example";
const ROOM = { agent: "counter", name: "room" };

let keys: KeySet;
beforeAll(async () => {
  keys = await createKeySet({ secret: "refusals-suite-secret-0123456789abcdef" });
});

const token = (extra: Partial<Parameters<typeof issueToken>[1]> = {}) =>
  issueToken(keys, { sub: "ada", ...ROOM, ...extra });
const url = (server: TestServer, t: string, name = "room") =>
  wsUrl(server, `/agents/counter/${name}?token=${t}`);

describe("precise reasons (property 13)", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ Counter }, { auth: tokenAuth({ keys }) });
  });
  afterAll(() => server.stop());

  it("refuses a token from another issuer as issuer_mismatch, not audience_mismatch", async () => {
    const closed = await refused(url(server, await token({ issuer: "https://evil.example" })));
    expect(closed).toMatchObject({
      code: REASONS.issuer_mismatch.closeCode,
      reason: "token issuer not accepted",
      received: [],
    });
    const wrongAudience = await refused(url(server, await token({ audience: "billing" })));
    expect(wrongAudience.reason).toBe("token audience not accepted");
    expect(server.stats().refusals).toEqual({ issuer_mismatch: 1, audience_mismatch: 1 });
  });
});

describe("scopes on every path (property 9, the auth half)", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ Counter }, { auth: tokenAuth({ keys, rateLimit: false }) });
  });
  afterAll(() => server.stop());

  it("refuses a socket whose token lacks the connect scope", async () => {
    const closed = await refused(url(server, await token({ scope: ["rpc", "state:write"] })));
    expect(closed).toMatchObject({
      code: REASONS.scope_mismatch.closeCode,
      reason: "token scope does not allow connect",
      received: [],
    });
  });

  it("refuses an HTTP request to onRequest whose token lacks the http scope", async () => {
    const connectOnly = await token({ scope: "connect" });
    const response = await fetch(httpUrl(server, "/agents/counter/room"), {
      headers: { authorization: `Bearer ${connectOnly}` },
    });
    expect(response.status).toBe(REASONS.scope_mismatch.status);
    expect(await response.json()).toMatchObject({ error: "scope_mismatch" });
    const withHttp = await token({ scope: "http" });
    const allowed = await fetch(httpUrl(server, "/agents/counter/room"), {
      headers: { authorization: `Bearer ${withHttp}` },
    });
    expect(allowed.status).toBe(200);
    expect(await allowed.json()).toMatchObject({ name: "room" });
  });

  it("lets a token without a scope claim do everything, over either transport", async () => {
    const full = await token();
    const client = await connect(url(server, full));
    expect(await client.rpc("increment", [1])).toBe(1);
    await client.close();
    const response = await fetch(httpUrl(server, "/agents/counter/room"), {
      headers: { authorization: `Bearer ${full}` },
    });
    expect(response.status).toBe(200);
  });
});

describe("the failed-attempt limit cannot be turned against users (property 10, the auth half)", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(
      { Counter },
      {
        auth: tokenAuth({
          keys,
          allowedOrigins: [APP],
          rateLimit: { failures: 3, windowMs: 60_000 },
        }),
      },
    );
  });
  afterAll(() => server.stop());

  it("does not count origin refusals against the address: a foreign page cannot lock its visitor out", async () => {
    // A foreign page opens the real app's socket from the visitor's browser, again and again.
    for (let i = 0; i < 10; i++) {
      const closed = await refused(url(server, await token()), {
        headers: { origin: "https://evil.example" },
      });
      expect(closed.code).toBe(REASONS.origin_not_allowed.closeCode);
    }
    expect(server.stats().refusals).toEqual({ origin_not_allowed: 10 });
    // The visitor, from the same address, still reaches the real app.
    const client = await connect(url(server, await token()), { headers: { origin: APP } });
    await client.close();
    // Bad credentials still count.
    for (let i = 0; i < 3; i++) {
      const closed = await refused(url(server, "garbage"), { headers: { origin: APP } });
      expect(closed.code).toBe(REASONS.token_malformed.closeCode);
    }
    const locked = await refused(url(server, await token()), { headers: { origin: APP } });
    expect(locked.code).toBe(REASONS.too_many_attempts.closeCode);
  });
});

describe("single-use tickets never fail open (property 11)", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(
      { Counter },
      {
        auth: tokenAuth({
          keys,
          singleUse: new MemoryReplayStore({ maxEntries: 2 }),
          rateLimit: false,
        }),
      },
    );
  });
  afterAll(() => server.stop());

  it("refuses new tickets with a retry hint when the replay store is full, and never evicts a spent id", async () => {
    const first = await token({ ttl: 60 });
    const second = await token({ ttl: 60 });
    for (const ticket of [first, second]) await (await connect(url(server, ticket))).close();
    const third = await refused(url(server, await token({ ttl: 60 })));
    expect(third.code).toBe(REASONS.replay_store_full.closeCode);
    expect(third.reason).toMatch(/^too many tickets in use; retry in \d+s$/);
    const seconds = Number(/retry in (\d+)s/.exec(third.reason)?.[1]);
    expect(seconds).toBeGreaterThan(50);
    expect(seconds).toBeLessThanOrEqual(61);
    // The spent tickets are still known: replaying them is refused, not let in.
    for (const ticket of [first, second]) {
      const replay = await refused(url(server, ticket));
      expect(replay.code).toBe(REASONS.token_replayed.closeCode);
      expect(replay.reason).toBe("token already used");
    }
  });
});

describe("revocation beats clock skew (property 6)", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer(
      { Counter },
      { auth: tokenAuth({ keys, clockTolerance: 1, rateLimit: false }) },
    );
  });
  afterAll(() => server.stop());

  it("revokes a token whose iat is up to clockTolerance after the revocation instant", async () => {
    await server.revoke({ sub: "ada" });
    const revokedAt = Date.now();
    // The issuer's clock runs ahead of ours: its token looks issued after the revocation.
    const ahead = Math.floor(revokedAt / 1000) + 1;
    const skewed = await signRaw(keys, claims({ ...ROOM, sub: "ada", iat: ahead, nbf: ahead - 1 }));
    const closed = await refused(url(server, skewed));
    expect(closed).toMatchObject({ code: REASONS.token_revoked.closeCode, received: [] });
    // Once more than the tolerance has passed, a new token really is newer than the revocation.
    while (Math.floor(Date.now() / 1000) * 1000 <= revokedAt + 1000) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const client = await connect(url(server, await token()));
    await client.close();
  });
});

import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  AuthError,
  type AuthErrorCode,
  type AuthPolicy,
  type AuthRequest,
  type AuthSession,
  createKeySet,
  fingerprint,
  issueToken,
  type KeySet,
  remoteKeySet,
  sessionCookie,
  type TokenAuthOptions,
  tokenAuth,
  type VerificationKeys,
} from "../../src/auth/index.js";

const APP = "https://app.example.com";

let keys: KeySet;

beforeAll(async () => {
  keys = await createKeySet();
});

afterEach(() => {
  vi.useRealTimers();
});

function request(
  options: {
    token?: string;
    query?: string;
    headers?: Record<string, string>;
    agent?: string;
    name?: string;
    address?: string;
  } = {},
): AuthRequest {
  const agent = options.agent ?? "chat";
  const name = options.name ?? "room-1";
  const url = new URL(`http://127.0.0.1/agents/${agent}/${name}`);
  if (options.token !== undefined) url.searchParams.set("token", options.token);
  if (options.query !== undefined) url.search = options.query;
  return {
    agent,
    name,
    url,
    headers: new Headers(options.headers ?? {}),
    remoteAddress: options.address ?? "203.0.113.7",
    websocket: true,
  };
}

const token = (overrides: Partial<Parameters<typeof issueToken>[1]> = {}, set: KeySet = keys) =>
  issueToken(set, { sub: "user-1", agent: "chat", name: "room-1", ...overrides });

async function refused(promise: Promise<unknown>, code: AuthErrorCode, closeCode: number) {
  const error = await promise.then(
    () => {
      throw new Error(`accepted, expected ${code}`);
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AuthError);
  expect({ code: (error as AuthError).code, closeCode: (error as AuthError).closeCode }).toEqual({
    code,
    closeCode,
  });
  return error as AuthError;
}

function refusedSync(run: () => void, code: AuthErrorCode, closeCode: number): AuthError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(AuthError);
    expect({ code: (error as AuthError).code, closeCode: (error as AuthError).closeCode }).toEqual({
      code,
      closeCode,
    });
    return error as AuthError;
  }
  throw new Error(`allowed, expected ${code}`);
}

const policy = (options: Partial<TokenAuthOptions> = {}): AuthPolicy =>
  tokenAuth({ keys, ...options });

describe("tokenAuth: where the token comes from", () => {
  it("accepts a token in the query and returns claims, expiry and fingerprint", async () => {
    const t = await token();
    const session = await policy().authenticate(request({ token: t }));
    expect(session.claims).toMatchObject({ sub: "user-1", agent: "chat", name: "room-1" });
    expect(session.claims.scope).toEqual(["connect", "rpc", "state:write", "message", "http"]);
    expect(session.expiresAt).toBe(session.claims.exp! * 1000);
    expect(session.fingerprint).toBe(fingerprint(t));
    expect(session.protocol).toBeUndefined();
  });

  it("reads another query parameter when configured", async () => {
    const t = await token();
    await expect(
      policy({ param: "access_token" }).authenticate(request({ query: `access_token=${t}` })),
    ).resolves.toBeTruthy();
    await refused(
      policy({ param: "access_token" }).authenticate(request({ token: t })),
      "token_missing",
      4001,
    );
  });

  it("accepts a token as the outpost.bearer.<jwt> subprotocol and asks the server to select outpost", async () => {
    const t = await token();
    const session = await policy().authenticate(
      request({ headers: { "sec-websocket-protocol": `outpost, outpost.bearer.${t}` } }),
    );
    expect(session.claims.sub).toBe("user-1");
    expect(session.protocol).toBe("outpost");
  });

  it("refuses a subprotocol token offered without the outpost subprotocol, which would echo it back", async () => {
    const t = await token();
    const error = await refused(
      policy().authenticate(
        request({ headers: { "sec-websocket-protocol": `outpost.bearer.${t}` } }),
      ),
      "token_malformed",
      4001,
    );
    expect(error.message).not.toContain(t);
  });

  it("accepts an Authorization: Bearer header from a non-browser client", async () => {
    const t = await token();
    const session = await policy().authenticate(
      request({ headers: { authorization: `Bearer ${t}` } }),
    );
    expect(session.claims.sub).toBe("user-1");
    await expect(
      policy().authenticate(request({ headers: { authorization: `bearer ${t}` } })),
    ).resolves.toBeTruthy();
    await refused(
      policy().authenticate(request({ headers: { authorization: `Basic dXNlcjpwdw==` } })),
      "token_missing",
      4001,
    );
  });

  it("refuses a request without any token", async () => {
    const error = await refused(policy().authenticate(request()), "token_missing", 4001);
    expect(error.fingerprint).toBeUndefined();
  });

  it("refuses a token in two places at once", async () => {
    const t = await token();
    const u = await token({ sub: "user-2" });
    const cases: AuthRequest[] = [
      request({ token: t, headers: { authorization: `Bearer ${t}` } }),
      request({ token: t, headers: { "sec-websocket-protocol": `outpost, outpost.bearer.${u}` } }),
      request({
        headers: {
          authorization: `Bearer ${t}`,
          "sec-websocket-protocol": `outpost, outpost.bearer.${t}`,
        },
      }),
      request({ query: `token=${t}&token=${u}` }),
      request({
        headers: { "sec-websocket-protocol": `outpost, outpost.bearer.${t}, outpost.bearer.${u}` },
      }),
      request({ headers: { authorization: `Bearer ${t}, Bearer ${u}` } }),
    ];
    for (const req of cases) {
      const error = await refused(policy().authenticate(req), "token_ambiguous", 4001);
      expect(error.fingerprint).toBeDefined();
    }
  });

  it("looks only at the configured transports", async () => {
    const t = await token();
    const onlyProtocol = policy({ transports: ["protocol"] });
    await refused(onlyProtocol.authenticate(request({ token: t })), "token_missing", 4001);
    await refused(
      onlyProtocol.authenticate(request({ headers: { authorization: `Bearer ${t}` } })),
      "token_missing",
      4001,
    );
    await expect(
      onlyProtocol.authenticate(
        request({ headers: { "sec-websocket-protocol": `outpost, outpost.bearer.${t}` } }),
      ),
    ).resolves.toBeTruthy();
    expect(() => policy({ transports: ["carrier-pigeon" as never] })).toThrow(TypeError);
    expect(() => policy({ transports: ["cookie"] })).toThrow(/sessionCookie/);
  });

  it("checks the agent and instance the request is for", async () => {
    const t = await token({ name: "room-1" });
    await refused(
      policy().authenticate(request({ token: t, name: "room-2" })),
      "scope_mismatch",
      4003,
    );
    await refused(
      policy().authenticate(request({ token: t, agent: "counter" })),
      "scope_mismatch",
      4003,
    );
  });

  it("refuses through every configured check with an AuthError carrying the fingerprint", async () => {
    const t = await token({ ttl: 7200 });
    const error = await refused(
      policy().authenticate(request({ token: t })),
      "lifetime_too_long",
      4001,
    );
    expect(error.fingerprint).toBe(fingerprint(t));
    expect(error.fingerprint).not.toBe(t);
    expect(t).not.toContain(error.fingerprint);
    expect(error.message).not.toContain(t);
    await expect(
      policy({ maxLifetime: 7200 }).authenticate(request({ token: t })),
    ).resolves.toBeTruthy();
  });

  it("takes a key set that is still being loaded", async () => {
    const auth = tokenAuth({ keys: Promise.resolve(keys) });
    await expect(auth.authenticate(request({ token: await token() }))).resolves.toBeTruthy();
  });

  it("surfaces a key set that failed to load as the server's error, not as a refusal", async () => {
    const auth = tokenAuth({ keys: Promise.reject(new Error("key file unreadable")) });
    const error = await auth
      .authenticate(request({ token: await token() }))
      .catch((e: unknown) => e);
    expect(error).not.toBeInstanceOf(AuthError);
    expect((error as Error).message).toBe("key file unreadable");
  });
});

describe("tokenAuth: origins", () => {
  it("refuses token auth from a browser origin off the allowlist with 4003", async () => {
    const auth = policy({ allowedOrigins: [APP] });
    const t = await token();
    await refused(
      auth.authenticate(request({ token: t, headers: { origin: "https://evil.example" } })),
      "origin_not_allowed",
      4003,
    );
    await refused(
      auth.authenticate(request({ token: t, headers: { origin: "null" } })),
      "origin_not_allowed",
      4003,
    );
    await expect(
      auth.authenticate(request({ token: t, headers: { origin: APP } })),
    ).resolves.toBeTruthy();
    // Non-browser clients send no Origin; the allowlist is about browsers.
    await expect(auth.authenticate(request({ token: t }))).resolves.toBeTruthy();
  });

  it("normalises the allowlist and refuses entries that are not origins", async () => {
    const auth = policy({ allowedOrigins: ["HTTPS://App.Example.com:443/"] });
    await expect(
      auth.authenticate(request({ token: await token(), headers: { origin: APP } })),
    ).resolves.toBeTruthy();
    expect(() => policy({ allowedOrigins: ["app.example.com"] })).toThrow(TypeError);
    expect(() => policy({ allowedOrigins: ["https://app.example.com/path"] })).toThrow(TypeError);
  });
});

describe("tokenAuth: session cookie", () => {
  const cookieHeader = (setCookie: string) => setCookie.split(";")[0]!;

  it("cannot be configured without an origin allowlist", () => {
    const cookie = sessionCookie({ keys });
    expect(() => tokenAuth({ keys, cookie })).toThrow(/allowedOrigins/);
    expect(() => tokenAuth({ keys, cookie, allowedOrigins: [] })).toThrow(/allowedOrigins/);
  });

  it("accepts the cookie from an allowed origin", async () => {
    const cookie = sessionCookie({ secret: "c".repeat(32) });
    const auth = tokenAuth({ keys, cookie, allowedOrigins: [APP] });
    const set = await cookie.issue({ sub: "user-1" });
    const session = await auth.authenticate(
      request({ headers: { cookie: `a=b; ${cookieHeader(set)}`, origin: APP } }),
    );
    expect(session.claims).toMatchObject({ sub: "user-1", agent: "*", name: "*" });
    expect(session.fingerprint).toBe(fingerprint(cookieHeader(set).split("=")[1]!));
  });

  it("refuses the cookie from another origin, or without any origin (cross-site WebSocket hijacking)", async () => {
    const cookie = sessionCookie({ secret: "c".repeat(32) });
    const auth = tokenAuth({ keys, cookie, allowedOrigins: [APP] });
    const header = cookieHeader(await cookie.issue({ sub: "user-1" }));
    const error = await refused(
      auth.authenticate(request({ headers: { cookie: header, origin: "https://evil.example" } })),
      "origin_not_allowed",
      4003,
    );
    expect(error.fingerprint).toBeDefined();
    await refused(
      auth.authenticate(request({ headers: { cookie: header } })),
      "origin_not_allowed",
      4003,
    );
  });

  it("refuses a cookie sent twice (a sibling subdomain planting its own)", async () => {
    const cookie = sessionCookie({ secret: "c".repeat(32) });
    const auth = tokenAuth({ keys, cookie, allowedOrigins: [APP] });
    const a = cookieHeader(await cookie.issue({ sub: "user-1" }));
    const b = cookieHeader(await cookie.issue({ sub: "attacker" }));
    await refused(
      auth.authenticate(request({ headers: { cookie: `${a}; ${b}`, origin: APP } })),
      "token_ambiguous",
      4001,
    );
  });

  it("prefers an explicit token over the cookie the browser always sends", async () => {
    const cookie = sessionCookie({ secret: "c".repeat(32) });
    const auth = tokenAuth({ keys, cookie, allowedOrigins: [APP] });
    const header = cookieHeader(await cookie.issue({ sub: "cookie-user" }));
    const session = await auth.authenticate(
      request({
        token: await token({ sub: "token-user" }),
        headers: { cookie: header, origin: APP },
      }),
    );
    expect(session.claims.sub).toBe("token-user");
  });

  it("never lets a cookie token stand in for a URL token, or the other way round", async () => {
    const cookie = sessionCookie({ keys });
    const auth = tokenAuth({ keys, cookie, allowedOrigins: [APP] });
    const cookieToken = cookieHeader(
      await cookie.issue({ sub: "user-1", agent: "chat", name: "room-1" }),
    ).split("=")[1]!;
    await refused(
      auth.authenticate(request({ token: cookieToken, headers: { origin: APP } })),
      "audience_mismatch",
      4001,
    );
    await refused(
      auth.authenticate(
        request({ headers: { cookie: `outpost_session=${await token()}`, origin: APP } }),
      ),
      "audience_mismatch",
      4001,
    );
  });

  it("scopes a cookie issued for one agent and instance", async () => {
    const cookie = sessionCookie({ secret: "c".repeat(32) });
    const auth = tokenAuth({ keys, cookie, allowedOrigins: [APP] });
    const header = cookieHeader(
      await cookie.issue({ sub: "u", agent: "chat", name: "room-1", scope: "connect" }),
    );
    const session = await auth.authenticate(request({ headers: { cookie: header, origin: APP } }));
    expect(session.claims.scope).toEqual(["connect"]);
    await refused(
      auth.authenticate(request({ name: "room-2", headers: { cookie: header, origin: APP } })),
      "scope_mismatch",
      4003,
    );
  });
});

describe("tokenAuth: failed-attempt limit", () => {
  function countingKeys(): VerificationKeys & { lookups: number } {
    const counter = {
      lookups: 0,
      algorithms: keys.algorithms,
      resolveKey: (header: Parameters<KeySet["resolveKey"]>[0]) => {
        counter.lookups++;
        return keys.resolveKey(header);
      },
    };
    return counter;
  }

  it("refuses an address over the limit with 4008 and retryAfterMs, before any crypto; other addresses still get in", async () => {
    const counting = countingKeys();
    const auth = tokenAuth({ keys: counting, rateLimit: { failures: 3, windowMs: 60_000 } });
    const bad = await token({ name: "room-2" });
    for (let i = 0; i < 3; i++) {
      await refused(
        auth.authenticate(request({ token: bad, address: "198.51.100.1" })),
        "scope_mismatch",
        4003,
      );
    }
    const lookupsBefore = counting.lookups;
    const good = await token();
    const error = await refused(
      auth.authenticate(request({ token: good, address: "198.51.100.1" })),
      "too_many_attempts",
      4008,
    );
    expect(counting.lookups).toBe(lookupsBefore);
    expect(error.status).toBe(429);
    expect(error.retryAfterMs).toBeGreaterThan(0);
    expect(error.retryAfterMs).toBeLessThanOrEqual(60_000);
    expect(error.message).toMatch(/retry in \d+s/);
    expect(error.fingerprint).toBe(fingerprint(good));

    await expect(
      auth.authenticate(request({ token: good, address: "198.51.100.2" })),
    ).resolves.toBeTruthy();
  });

  it("lets the address try again once its window has passed", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const auth = policy({ rateLimit: { failures: 2, windowMs: 10_000 } });
    for (let i = 0; i < 2; i++) await refused(auth.authenticate(request()), "token_missing", 4001);
    const error = await refused(auth.authenticate(request()), "too_many_attempts", 4008);
    expect(error.retryAfterMs).toBe(10_000);
    vi.advanceTimersByTime(4_000);
    expect(
      (await refused(auth.authenticate(request()), "too_many_attempts", 4008)).retryAfterMs,
    ).toBe(6_000);
    vi.advanceTimersByTime(6_000);
    await expect(auth.authenticate(request({ token: await token() }))).resolves.toBeTruthy();
  });

  it("does not count or slow successful attempts", async () => {
    const auth = policy({ rateLimit: { failures: 2, windowMs: 60_000 } });
    const good = await token();
    for (let i = 0; i < 20; i++) await auth.authenticate(request({ token: good }));
    await refused(auth.authenticate(request()), "token_missing", 4001);
    await expect(auth.authenticate(request({ token: good }))).resolves.toBeTruthy();
  });

  it("counts failures of an IPv6 client across its /64", async () => {
    const auth = policy({ rateLimit: { failures: 2, windowMs: 60_000 } });
    await refused(
      auth.authenticate(request({ address: "2001:db8:1:2::1" })),
      "token_missing",
      4001,
    );
    await refused(
      auth.authenticate(request({ address: "2001:db8:1:2::ffff" })),
      "token_missing",
      4001,
    );
    await refused(
      auth.authenticate(request({ token: await token(), address: "2001:db8:1:2:aaaa::9" })),
      "too_many_attempts",
      4008,
    );
    await expect(
      auth.authenticate(request({ token: await token(), address: "2001:db8:1:3::1" })),
    ).resolves.toBeTruthy();
  });

  it("does not count refusals that are not the client's fault, such as an unreachable identity provider", async () => {
    const unreachable = remoteKeySet("http://127.0.0.1:1/jwks.json", {
      algorithms: ["EdDSA"],
      timeoutDuration: 500,
    });
    const auth = tokenAuth({ keys: unreachable, rateLimit: { failures: 1, windowMs: 60_000 } });
    for (let i = 0; i < 3; i++) {
      const error = await refused(
        auth.authenticate(request({ token: await token() })),
        "keys_unavailable",
        1013,
      );
      expect(error.transient).toBe(true);
    }
    await refused(auth.authenticate(request()), "token_missing", 4001);
    await refused(auth.authenticate(request()), "too_many_attempts", 4008);
  });

  it("can be turned off", async () => {
    const auth = policy({ rateLimit: false });
    for (let i = 0; i < 30; i++) await refused(auth.authenticate(request()), "token_missing", 4001);
    await expect(auth.authenticate(request({ token: await token() }))).resolves.toBeTruthy();
  });

  it("limits 20 failures a minute by default", async () => {
    const auth = policy();
    for (let i = 0; i < 20; i++) await refused(auth.authenticate(request()), "token_missing", 4001);
    await refused(auth.authenticate(request({ token: await token() })), "too_many_attempts", 4008);
  });
});

describe("tokenAuth: single-use tickets", () => {
  it("refuses a ticket the second time it is presented", async () => {
    const auth = policy({ singleUse: true });
    const ticket = await token({ ttl: 30 });
    await expect(auth.authenticate(request({ token: ticket }))).resolves.toBeTruthy();
    const error = await refused(
      auth.authenticate(request({ token: ticket })),
      "token_replayed",
      4001,
    );
    expect(error.fingerprint).toBe(fingerprint(ticket));
    await expect(
      auth.authenticate(request({ token: await token({ ttl: 30 }) })),
    ).resolves.toBeTruthy();
  });

  it("lets a token be reused when single-use is off", async () => {
    const auth = policy();
    const t = await token();
    await auth.authenticate(request({ token: t }));
    await expect(auth.authenticate(request({ token: t }))).resolves.toBeTruthy();
  });

  it("does not spend session cookies, which the browser sends on every reconnect", async () => {
    const cookie = sessionCookie({ keys });
    const auth = tokenAuth({ keys, cookie, allowedOrigins: [APP], singleUse: true });
    const header = (await cookie.issue({ sub: "u" })).split(";")[0]!;
    await auth.authenticate(request({ headers: { cookie: header, origin: APP } }));
    await expect(
      auth.authenticate(request({ headers: { cookie: header, origin: APP } })),
    ).resolves.toBeTruthy();
  });
});

describe("tokenAuth: revocation", () => {
  it("refuses every token of a revoked subject issued at or before the revocation, with 4009", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    // No clock tolerance, to see the exact boundary; with one, see "revocation beats clock skew".
    const auth = policy({ clockTolerance: 0 });
    const before = await token();
    const session = await auth.authenticate(request({ token: before }));
    const otherUser = await auth.authenticate(request({ token: await token({ sub: "user-2" }) }));
    auth.revoke({ sub: "user-1" });
    expect(auth.isRevoked(session)).toBe(true);
    expect(auth.isRevoked(otherUser)).toBe(false);
    await refused(auth.authenticate(request({ token: before })), "token_revoked", 4009);
    refusedSync(() => auth.authorize(session, "rpc"), "token_revoked", 4009);
    // The same second is "at" the revocation.
    await refused(auth.authenticate(request({ token: await token() })), "token_revoked", 4009);
    vi.advanceTimersByTime(1_000);
    await expect(auth.authenticate(request({ token: await token() }))).resolves.toBeTruthy();
  });

  it("refuses one revoked token by jti and leaves the subject's others alone", async () => {
    const auth = policy();
    const a = await token({ jti: "ticket-a" });
    const b = await token({ jti: "ticket-b" });
    const session = await auth.authenticate(request({ token: a }));
    auth.revoke({ jti: "ticket-a" });
    expect(auth.isRevoked(session)).toBe(true);
    await refused(auth.authenticate(request({ token: a })), "token_revoked", 4009);
    await expect(auth.authenticate(request({ token: b }))).resolves.toBeTruthy();
  });

  it("needs a sub or a jti", () => {
    expect(() => policy().revoke({})).toThrow(TypeError);
  });
});

describe("tokenAuth: authorize", () => {
  async function sessionWith(
    overrides: Partial<Parameters<typeof issueToken>[1]> = {},
  ): Promise<[AuthPolicy, AuthSession]> {
    const auth = policy();
    return [auth, await auth.authenticate(request({ token: await token(overrides) }))];
  }

  it("allows actions in scope and refuses others with 4003", async () => {
    const [auth, session] = await sessionWith({ scope: "connect rpc" });
    expect(() => auth.authorize(session, "rpc")).not.toThrow();
    const error = refusedSync(() => auth.authorize(session, "state:write"), "scope_mismatch", 4003);
    expect(error.fingerprint).toBe(session.fingerprint);
    const [full, everything] = await sessionWith();
    expect(() => full.authorize(everything, "state:write")).not.toThrow();
  });

  it("guards user messages with the message scope and requests with the http scope", async () => {
    const [auth, session] = await sessionWith({ scope: "connect rpc" });
    refusedSync(() => auth.authorize(session, "message"), "scope_mismatch", 4003);
    const [, talker] = await sessionWith({ scope: "connect message" });
    expect(() => auth.authorize(talker, "message")).not.toThrow();
    refusedSync(() => auth.authorize(talker, "rpc"), "scope_mismatch", 4003);
    // authenticate() checks connect for a socket and http for a request.
    const httpOnly = await token({ scope: "http" });
    await refused(auth.authenticate(request({ token: httpOnly })), "scope_mismatch", 4003);
    await expect(
      auth.authenticate({ ...request({ token: httpOnly }), websocket: false }),
    ).resolves.toBeTruthy();
    const connectOnly = await token({ scope: "connect" });
    await refused(
      auth.authenticate({ ...request({ token: connectOnly }), websocket: false }),
      "scope_mismatch",
      4003,
    );
  });

  it("refuses once the credentials have expired, with 4001", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const [auth, session] = await sessionWith({ ttl: 60 });
    vi.advanceTimersByTime(59_000);
    expect(() => auth.authorize(session, "rpc")).not.toThrow();
    vi.advanceTimersByTime(1_000);
    refusedSync(() => auth.authorize(session, "rpc"), "token_expired", 4001);
  });
});

describe("tokenAuth: in-band refresh", () => {
  it("replaces the session with one for a fresh token of the same subject", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const auth = policy();
    const first = await token({ ttl: 60 });
    const current = await auth.authenticate(
      request({ headers: { "sec-websocket-protocol": `outpost, outpost.bearer.${first}` } }),
    );
    vi.advanceTimersByTime(30_000);
    const fresh = await token({ ttl: 300 });
    const next = await auth.refresh(current, fresh, request());
    expect(next.expiresAt).toBeGreaterThan(current.expiresAt!);
    expect(next.fingerprint).toBe(fingerprint(fresh));
    expect(next.protocol).toBe("outpost");
  });

  it("refuses a refresh token for another subject", async () => {
    const auth = policy();
    const current = await auth.authenticate(request({ token: await token() }));
    const error = await refused(
      auth.refresh(current, await token({ sub: "user-2" }), request()),
      "subject_mismatch",
      4003,
    );
    expect(error.fingerprint).toBeDefined();
  });

  it("refuses a refresh token for another instance, an expired one or none", async () => {
    const auth = policy();
    const current = await auth.authenticate(request({ token: await token() }));
    await refused(
      auth.refresh(current, await token({ name: "room-2" }), request()),
      "scope_mismatch",
      4003,
    );
    await refused(auth.refresh(current, "", request()), "token_missing", 4001);
    await refused(auth.refresh(current, "garbage", request()), "token_malformed", 4001);
  });

  it("refuses a refresh for a revoked subject and counts failed refreshes", async () => {
    const auth = policy({ rateLimit: { failures: 2, windowMs: 60_000 } });
    const current = await auth.authenticate(request({ token: await token() }));
    await refused(auth.refresh(current, "garbage", request()), "token_malformed", 4001);
    await refused(auth.refresh(current, "garbage", request()), "token_malformed", 4001);
    await refused(auth.refresh(current, await token(), request()), "too_many_attempts", 4008);
  });
});

describe("tokenAuth: server-facing options", () => {
  it("asks the server to close by default, or to answer with HTTP statuses", async () => {
    expect(policy().rejectWithHttp).toBe(false);
    const http = policy({ rejectWith: "http" });
    expect(http.rejectWithHttp).toBe(true);
    expect((await refused(http.authenticate(request()), "token_missing", 4001)).status).toBe(401);
    expect(() => policy({ rejectWith: "teapot" as never })).toThrow(TypeError);
  });

  it("publishes public keys only when asked and when there are any", async () => {
    expect(policy().jwks).toBeUndefined();
    const published = policy({ publishJwks: true });
    expect(await published.jwks!()).toEqual(keys.jwks());
    const secret = await createKeySet({ secret: "s".repeat(32) });
    expect(tokenAuth({ keys: secret, publishJwks: true }).jwks).toBeUndefined();
  });

  it("publishes keys added by a later rotation", async () => {
    const rotating = await createKeySet();
    const auth = tokenAuth({ keys: rotating, publishJwks: true });
    await rotating.rotate();
    expect((await auth.jwks!()).keys).toHaveLength(2);
  });

  it("refuses nonsense configuration at creation", () => {
    expect(() => tokenAuth({} as TokenAuthOptions)).toThrow(TypeError);
    expect(() => policy({ maxLifetime: 0 })).toThrow(TypeError);
  });
});

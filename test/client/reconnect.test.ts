import { describe, expect, it } from "vitest";
import { readTokenTimes, refreshTime } from "../../src/client/jwt.js";
import {
  backoffDelay,
  classifyClose,
  resolveReconnectOptions,
  retryAfterMs,
} from "../../src/client/reconnect.js";

describe("backoffDelay", () => {
  const options = resolveReconnectOptions({
    minDelay: 100,
    maxDelay: 1000,
    factor: 2,
    jitter: 0.5,
  });

  it("grows exponentially up to the cap", () => {
    expect([1, 2, 3, 4, 5, 9].map((n) => backoffDelay(n, options, () => 0))).toEqual([
      100, 200, 400, 800, 1000, 1000,
    ]);
  });

  it("takes up to `jitter` of each delay off at random", () => {
    expect(backoffDelay(3, options, () => 0.999)).toBe(200);
    expect(backoffDelay(3, options, () => 0.5)).toBe(300);
  });
});

describe("classifyClose", () => {
  it("maps the auth close codes to what the client does", () => {
    expect(classifyClose(4001, "token expired")).toEqual({ kind: "reauthenticate" });
    expect(classifyClose(4003, "")).toEqual({ kind: "stop", code: "forbidden" });
    expect(classifyClose(4009, "")).toEqual({ kind: "stop", code: "revoked" });
    expect(classifyClose(4008, "too many failed attempts; retry in 42s")).toEqual({
      kind: "wait",
      ms: 42_000,
    });
    expect(classifyClose(4000, "custom")).toEqual({ kind: "stop", code: "refused" });
  });

  it("retries on going-away, abnormal, too-big, server-error and try-later closes", () => {
    for (const code of [1000, 1001, 1006, 1008, 1009, 1011, 1013]) {
      expect(classifyClose(code, "")).toEqual({ kind: "retry" });
    }
  });

  it("reads the retry time from a 4008 reason", () => {
    expect(retryAfterMs("retry in 1.5s")).toBe(1500);
    expect(retryAfterMs("too many attempts")).toBeUndefined();
  });
});

describe("token timing", () => {
  const jwt = (claims: object) =>
    `e30.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.c2ln`;

  it("reads exp and iat from a JWT and ignores anything else", () => {
    expect(readTokenTimes(jwt({ exp: 2000, iat: 1000 }))).toEqual({
      expiresAt: 2_000_000,
      issuedAt: 1_000_000,
    });
    expect(readTokenTimes(jwt({ sub: "x" }))).toBeUndefined();
    expect(readTokenTimes("demo-token-123")).toBeUndefined();
    expect(readTokenTimes("a.!!!.c")).toBeUndefined();
  });

  it("refreshes at 80% of the life, earlier for a token that sat in a cache", () => {
    const times = { expiresAt: 100_000, issuedAt: 0 };
    expect(refreshTime(times, 0, 0.8)).toBe(80_000);
    expect(refreshTime(times, 50_000, 0.8)).toBe(80_000);
    // A skewed local clock: received "before" it was issued, still 80% from receipt.
    expect(refreshTime({ expiresAt: 200_000, issuedAt: 100_000 }, 0, 0.8)).toBe(80_000);
  });
});

import { describe, expect, it } from "vitest";
import { MemoryReplayStore } from "../../src/auth/index.js";
import { clientKey, FailureLimiter } from "../../src/auth/rate-limit.js";
import { Revocations } from "../../src/auth/revocations.js";

describe("FailureLimiter", () => {
  it("refuses after the limit until the window ends", () => {
    const limiter = new FailureLimiter({ failures: 2, windowMs: 1000 });
    limiter.fail("a", 0);
    expect(limiter.retryAfter("a", 10)).toBe(0);
    limiter.fail("a", 10);
    expect(limiter.retryAfter("a", 10)).toBe(990);
    expect(limiter.retryAfter("b", 10)).toBe(0);
    expect(limiter.retryAfter("a", 1000)).toBe(0);
  });

  it("keeps memory bounded by forgetting the oldest address", () => {
    const limiter = new FailureLimiter({ failures: 1, windowMs: 60_000, maxAddresses: 100 });
    for (let i = 0; i < 10_000; i++) limiter.fail(`10.0.${i >> 8}.${i & 255}`, 0);
    expect(limiter.size).toBeLessThanOrEqual(100);
    expect(limiter.retryAfter(`10.0.${9999 >> 8}.${9999 & 255}`, 0)).toBeGreaterThan(0);
  });

  it("drops expired windows before live ones when full", () => {
    const limiter = new FailureLimiter({ failures: 1, windowMs: 1000, maxAddresses: 2 });
    limiter.fail("old", 0);
    limiter.fail("live", 900);
    limiter.fail("new", 1500);
    expect(limiter.retryAfter("live", 1500)).toBe(400);
    expect(limiter.retryAfter("new", 1500)).toBe(1000);
  });
});

describe("clientKey", () => {
  it("groups IPv6 addresses by /64 and unwraps IPv4-mapped ones", () => {
    expect(clientKey("192.0.2.1")).toBe("192.0.2.1");
    expect(clientKey("::ffff:192.0.2.1")).toBe("192.0.2.1");
    expect(clientKey("2001:db8:0:1::5")).toBe(clientKey("2001:0db8:0000:0001:ffff:1:2:3"));
    expect(clientKey("2001:db8:0:1::5")).toBe("2001:db8:0:1::/64");
    expect(clientKey("2001:db8:0:1::5")).not.toBe(clientKey("2001:db8:0:2::5"));
    expect(clientKey("::1")).toBe("0:0:0:0::/64");
    expect(clientKey("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
  });
});

describe("MemoryReplayStore", () => {
  it("spends an id once while its token lives", () => {
    const store = new MemoryReplayStore();
    const exp = Math.floor(Date.now() / 1000) + 60;
    expect(store.spend("a", exp)).toBe(true);
    expect(store.spend("a", exp)).toBe(false);
    expect(store.spend("b", exp)).toBe(true);
  });

  it("forgets ids whose tokens have expired", () => {
    const store = new MemoryReplayStore();
    const past = Math.floor(Date.now() / 1000) - 1;
    expect(store.spend("old", past)).toBe(true);
    expect(store.spend("old", past + 120)).toBe(true);
  });

  it("stays within its bound by refusing new ids, never by forgetting a spent one", () => {
    const store = new MemoryReplayStore({ maxEntries: 50 });
    const exp = Math.floor(Date.now() / 1000) + 60;
    let refusedIds = 0;
    for (let i = 0; i < 1000; i++) {
      try {
        store.spend(`id-${i}`, exp);
      } catch (error) {
        expect(error).toMatchObject({ code: "replay_store_full", closeCode: 1013 });
        refusedIds++;
      }
    }
    expect(store.size).toBeLessThanOrEqual(50);
    expect(refusedIds).toBe(950);
    for (let i = 0; i < 50; i++) expect(store.spend(`id-${i}`, exp)).toBe(false);
  });
});

describe("Revocations", () => {
  const claims = (sub: string, iat: number, jti?: string) => ({
    sub,
    agent: "*",
    name: "*",
    scope: [],
    iat,
    ...(jti !== undefined && { jti }),
  });

  it("revokes a subject's tokens issued at or before the revocation", () => {
    const revocations = new Revocations(3600);
    revocations.revoke({ sub: "u" }, 100_000);
    expect(revocations.isRevoked(claims("u", 99))).toBe(true);
    expect(revocations.isRevoked(claims("u", 100))).toBe(true);
    expect(revocations.isRevoked(claims("u", 101))).toBe(false);
    expect(revocations.isRevoked(claims("v", 50))).toBe(false);
    expect(revocations.isRevoked({ sub: "u", agent: "*", name: "*", scope: [] })).toBe(true);
  });

  it("revokes one token by id", () => {
    const revocations = new Revocations(3600);
    revocations.revoke({ jti: "t1" }, 0);
    expect(revocations.isRevoked(claims("u", 0, "t1"))).toBe(true);
    expect(revocations.isRevoked(claims("u", 0, "t2"))).toBe(false);
  });

  it("keeps entries only as long as a token they refuse could live", () => {
    const revocations = new Revocations(60);
    for (let i = 0; i < 100; i++) revocations.revoke({ sub: `u${i}`, jti: `j${i}` }, 0);
    expect(revocations.size).toBe(200);
    revocations.revoke({ sub: "late" }, 61_000);
    expect(revocations.size).toBe(1);
  });
});

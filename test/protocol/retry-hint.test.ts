import { describe, expect, it } from "vitest";
import { retryAfterMs } from "../../src/client/reconnect.js";
import { formatRetryReason, parseRetryAfterMs } from "../../src/protocol/retry-hint.js";

describe("retry hint", () => {
  it("formats the wait in whole seconds, rounded up, at least one", () => {
    expect(formatRetryReason("too many failed attempts", 41_200)).toBe(
      "too many failed attempts; retry in 42s",
    );
    expect(formatRetryReason("token signing keys unavailable", 1)).toBe(
      "token signing keys unavailable; retry in 1s",
    );
    expect(formatRetryReason("x", 0)).toBe("x; retry in 1s");
    expect(formatRetryReason("x", Number.NaN)).toBe("x; retry in 1s");
  });

  it("does not add a second hint to a reason that has one", () => {
    expect(formatRetryReason("busy; retry in 3s", 9_000)).toBe("busy; retry in 3s");
  });

  it("parses what it formats, and nothing else", () => {
    for (const ms of [1, 999, 1000, 1001, 42_000, 3_600_000]) {
      const parsed = parseRetryAfterMs(formatRetryReason("too many failed attempts", ms));
      expect(parsed).toBe(Math.max(1, Math.ceil(ms / 1000)) * 1000);
    }
    expect(parseRetryAfterMs("retry in 1.5s")).toBe(1500);
    expect(parseRetryAfterMs("token expired")).toBeUndefined();
    // A number of seconds that is not a retry hint is not one.
    expect(parseRetryAfterMs("session lasted 30s")).toBeUndefined();
  });

  it("is the parser the client uses for close reasons", () => {
    expect(retryAfterMs("session lasted 30s")).toBeUndefined();
    expect(retryAfterMs(formatRetryReason("too many tickets in use", 7_000))).toBe(7_000);
  });
});

import { errors } from "jose";
import { describe, expect, it } from "vitest";
import { fromJoseError, toRefusal } from "../../src/auth/errors.js";
import {
  AuthError,
  type AuthErrorCode,
  fingerprint,
  isAuthError,
  REASONS,
} from "../../src/auth/index.js";

describe("AuthError", () => {
  it("a refusal carries no stack trace: its code says where it comes from", () => {
    const error = new AuthError("token_expired");
    expect(error.stack).toBe("AuthError: token expired");
    // Only the refusal goes without one: other errors keep theirs.
    expect(new Error("x").stack).toMatch(/\n\s+at /);
  });

  it("a refused token's fingerprint reads as its SHA-256 prefix, whichever way the refusal was made", () => {
    const token = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJldmUifQ.c2lnbmF0dXJl";
    const fromJose = toRefusal(new errors.JWSSignatureVerificationFailed(), token);
    const fromOutpost = toRefusal(new AuthError("scope_mismatch"), token);
    const given = toRefusal(new AuthError("token_revoked", undefined, { fingerprint: "f" }), token);
    expect(fromJose.code).toBe("signature_invalid");
    expect(fromJose.fingerprint).toBe(fingerprint(token));
    expect(fromOutpost.fingerprint).toBe(fingerprint(token));
    expect(given.fingerprint).toBe("f");
    expect(toRefusal(new AuthError("token_missing"), undefined).fingerprint).toBeUndefined();
    // Neither the token nor its fingerprint is part of what serializes.
    expect(JSON.stringify(fromJose)).not.toContain(token.split(".")[2]);
  });

  it("has a stable code, close code, status and a safe default message", () => {
    const error = new AuthError("too_many_attempts", undefined, {
      retryAfterMs: 1500,
      fingerprint: "abc",
    });
    expect(error).toBeInstanceOf(Error);
    expect(error).toMatchObject({
      name: "AuthError",
      code: "too_many_attempts",
      closeCode: 4008,
      status: 429,
      retryAfterMs: 1500,
      fingerprint: "abc",
      message: "too many failed attempts",
    });
    expect(isAuthError(error)).toBe(true);
    expect(isAuthError(new Error("x"))).toBe(false);
  });

  it.each([
    ["token_missing", 4001],
    ["token_malformed", 4001],
    ["signature_invalid", 4001],
    ["token_expired", 4001],
    ["token_not_yet_valid", 4001],
    ["lifetime_too_long", 4001],
    ["audience_mismatch", 4001],
    ["algorithm_not_allowed", 4001],
    ["unknown_key", 4001],
    ["token_replayed", 4001],
    ["token_ambiguous", 4001],
    ["scope_mismatch", 4003],
    ["origin_not_allowed", 4003],
    ["subject_mismatch", 4003],
    ["too_many_attempts", 4008],
    ["token_revoked", 4009],
  ] as const)("%s closes with %i", (code, closeCode) => {
    expect(new AuthError(code).closeCode).toBe(closeCode);
  });
});

describe("the reasons table", () => {
  it.each([
    ["too_many_connections", 1013, 503, true],
    ["too_many_instances", 1013, 503, true],
    ["shutting_down", 1001, 503, false],
    ["agent_failed_to_start", 1011, 500, false],
    ["internal_error", 1011, 500, false],
    ["keys_unavailable", 1013, 503, true],
    ["replay_store_full", 1013, 503, true],
    ["issuer_mismatch", 4001, 401, false],
    ["not_found", 4004, 404, false],
    ["unknown_agent", 4004, 404, false],
  ] as const)("%s closes %i, answers %i, transient %s", (code, closeCode, status, transient) => {
    expect(REASONS[code]).toMatchObject({ closeCode, status, transient });
    expect(new AuthError(code)).toMatchObject({ code, closeCode, status, transient });
  });

  it("counts only failed credentials against the client address", () => {
    const uncounted = (Object.keys(REASONS) as AuthErrorCode[]).filter((c) => !REASONS[c].counted);
    expect(uncounted.sort()).toEqual(
      [
        "agent_failed_to_start",
        "bad_handshake",
        "bad_instance_name",
        "internal_error",
        "keys_unavailable",
        "not_found",
        "origin_not_allowed",
        "owner_unavailable",
        "replay_store_full",
        "shutting_down",
        "too_many_attempts",
        "too_many_connections",
        "too_many_instances",
        "unknown_agent",
        "url_too_long",
      ].sort(),
    );
    for (const code of Object.keys(REASONS) as AuthErrorCode[]) {
      if (REASONS[code].transient) expect(REASONS[code].counted, code).toBe(false);
    }
  });

  it("writes the retry hint into the close reason and the Retry-After seconds", () => {
    const error = new AuthError("keys_unavailable", undefined, { retryAfterMs: 4_200 });
    expect(error.message).toBe("token signing keys unavailable");
    expect(error.reason).toBe("token signing keys unavailable; retry in 5s");
    expect(error.retryAfterSeconds).toBe(5);
    expect(new AuthError("token_expired").reason).toBe("token expired");
    expect(new AuthError("token_expired").retryAfterSeconds).toBeUndefined();
  });
});

describe("fromJoseError", () => {
  const claimFailure = (claim: string, reason = "check_failed") =>
    new errors.JWTClaimValidationFailed("jose text that must not matter", {}, claim, reason);

  it.each([
    [new errors.JWTExpired("x", {}), "token_expired"],
    [new errors.JWSSignatureVerificationFailed(), "signature_invalid"],
    [new errors.JWKSNoMatchingKey(), "unknown_key"],
    [new errors.JWKSMultipleMatchingKeys(), "unknown_key"],
    [new errors.JWKSTimeout(), "keys_unavailable"],
    [new errors.JOSEAlgNotAllowed("x"), "algorithm_not_allowed"],
    [new errors.JOSENotSupported("x"), "algorithm_not_allowed"],
    [claimFailure("nbf"), "token_not_yet_valid"],
    [claimFailure("iat"), "token_not_yet_valid"],
    [claimFailure("aud"), "audience_mismatch"],
    [claimFailure("aud", "missing"), "audience_mismatch"],
    [claimFailure("iss"), "issuer_mismatch"],
    [claimFailure("exp", "missing"), "token_malformed"],
    [claimFailure("iat", "invalid"), "token_malformed"],
    [new errors.JWSInvalid("x"), "token_malformed"],
    [new errors.JWTInvalid("x"), "token_malformed"],
    [new TypeError("anything else"), "token_malformed"],
  ])("maps %s by its code to %s", (error, code) => {
    const mapped = fromJoseError(error);
    expect(mapped).toBeInstanceOf(AuthError);
    expect(mapped.code).toBe(code);
    expect(mapped.message).not.toMatch(/jose text|anything else/);
  });
});

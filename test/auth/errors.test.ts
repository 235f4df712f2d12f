import { errors } from "jose";
import { describe, expect, it } from "vitest";
import { fromJoseError } from "../../src/auth/errors.js";
import { AuthError, isAuthError } from "../../src/auth/index.js";

describe("AuthError", () => {
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

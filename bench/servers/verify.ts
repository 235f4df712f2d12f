/**
 * Token verification for the two servers the bench writes itself (bare and Socket.IO):
 * plain `jose`, the key imported once as a `CryptoKey`, and the same claims checks Outpost
 * makes by default (algorithm, audience, issuer, expiry, lifetime, agent and instance).
 */
import { type CryptoKey, importJWK, type JWTPayload, jwtVerify } from "jose";
import { AUDIENCE, ISSUER, MAX_LIFETIME, type ServerConfig } from "../config.js";

export interface Verifier {
  /** Resolves the token's expiry (seconds since the epoch), or rejects when it is refused. */
  verify(token: string | null | undefined, agent: string, name: string): Promise<number>;
}

export async function createVerifier(config: ServerConfig): Promise<Verifier> {
  const algorithm = config.algorithm;
  // Both keys as a `CryptoKey`, imported once. (jose's `importJWK` gives an `oct` key back as
  // raw bytes, which jose would import again on every verify: a floor slower than it need be.)
  const key =
    algorithm === "EdDSA"
      ? ((await importJWK(config.keys.ed25519.publicJwk, "EdDSA")) as CryptoKey)
      : await crypto.subtle.importKey(
          "raw",
          Buffer.from(config.keys.hs256.secret, "base64url"),
          { name: "HMAC", hash: "SHA-256" },
          false,
          ["verify"],
        );
  const options = {
    algorithms: [algorithm],
    audience: AUDIENCE,
    issuer: ISSUER,
    requiredClaims: ["exp"],
    clockTolerance: 5,
  };
  return {
    async verify(token, agent, name) {
      if (typeof token !== "string" || token.length === 0 || token.length > 8192) {
        throw new Error("token_missing");
      }
      const { payload } = await jwtVerify<JWTPayload & { agent?: string; name?: string }>(
        token,
        key,
        options,
      );
      const exp = payload.exp as number;
      if (exp - (payload.nbf ?? payload.iat ?? exp) > MAX_LIFETIME) {
        throw new Error("lifetime_too_long");
      }
      if (payload.agent !== agent && payload.agent !== "*") throw new Error("scope_mismatch");
      if (payload.name !== name && payload.name !== "*") throw new Error("scope_mismatch");
      return exp;
    },
  };
}

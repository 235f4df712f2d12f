/**
 * Keys and tokens. The orchestrator makes one Ed25519 pair and one HS256 secret per run and
 * hands them to every process; the load generator signs every token before a timed window
 * opens, so signing is never measured, and each connect in a window uses its own token.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { base64url, type CryptoKey, exportJWK, generateKeyPair, importJWK, SignJWT } from "jose";
import { AGENT, type Algorithm, AUDIENCE, type BenchKeys, INSTANCE, ISSUER } from "./config.js";

/** Lifetime of bench tokens: longer than a full run, shorter than the default maximum (1 h). */
export const TOKEN_TTL_SECONDS = 30 * 60;

export async function createBenchKeys(): Promise<BenchKeys> {
  const pair = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
  const ed = randomUUID().slice(0, 8);
  return {
    ed25519: {
      kid: `ed-${ed}`,
      privateJwk: { ...(await exportJWK(pair.privateKey)), kid: `ed-${ed}`, alg: "EdDSA" },
      publicJwk: { ...(await exportJWK(pair.publicKey)), kid: `ed-${ed}`, alg: "EdDSA" },
    },
    hs256: { kid: `hs-${ed}`, secret: base64url.encode(randomBytes(32)) },
  };
}

/** Signs bench tokens for one algorithm with the run's key. */
export interface TokenSigner {
  sign(sub: string): Promise<string>;
}

export async function createSigner(keys: BenchKeys, algorithm: Algorithm): Promise<TokenSigner> {
  const kid = algorithm === "EdDSA" ? keys.ed25519.kid : keys.hs256.kid;
  const key = (await (algorithm === "EdDSA"
    ? importJWK(keys.ed25519.privateJwk, "EdDSA")
    : importJWK({ kty: "oct", k: keys.hs256.secret }, "HS256"))) as CryptoKey;
  return { sign: (sub) => signWith(key, algorithm, kid, sub) };
}

function signWith(key: CryptoKey, algorithm: Algorithm, kid: string, sub: string) {
  return new SignJWT({ agent: AGENT, name: INSTANCE, scope: ["connect", "rpc", "state:write"] })
    .setProtectedHeader({ alg: algorithm, kid, typ: "JWT" })
    .setSubject(sub)
    .setAudience(AUDIENCE)
    .setIssuer(ISSUER)
    .setIssuedAt()
    .setNotBefore("0s")
    .setExpirationTime(`${TOKEN_TTL_SECONDS}s`)
    .setJti(randomUUID())
    .sign(key);
}

/**
 * A token that looks right (same algorithm, `kid` and claims) but is signed by another key,
 * so a server must run the signature check to refuse it: the expensive refusal.
 */
export async function forgedToken(keys: BenchKeys): Promise<string> {
  const other = await generateKeyPair("EdDSA", { crv: "Ed25519" });
  return signWith(other.privateKey, "EdDSA", keys.ed25519.kid, "intruder");
}

/**
 * Keys and tokens. The orchestrator makes one Ed25519 pair and one HS256 secret per run and
 * hands them to every process; the load generator signs every token with Outpost's own
 * `issueToken` before a timed window opens, so signing is never measured, and each connect
 * in a window uses its own token. The bare and Socket.IO servers verify the same tokens
 * with plain `jose`.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { base64url, exportJWK, generateKeyPair } from "jose";
import { createKeySet, issueToken, type KeySet } from "../src/auth/index.js";
import { AGENT, type Algorithm, type BenchKeys, INSTANCE } from "./config.js";

/**
 * Lifetime of bench tokens, within the default maximum (1 h). A full run can take longer:
 * `bench/run.ts` signs a fresh set when a round would start with less than half of it left.
 */
export const TOKEN_TTL_SECONDS = 30 * 60;

export async function createBenchKeys(): Promise<BenchKeys> {
  const pair = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
  const id = randomUUID().slice(0, 8);
  return {
    ed25519: {
      kid: `ed-${id}`,
      privateJwk: { ...(await exportJWK(pair.privateKey)), kid: `ed-${id}`, alg: "EdDSA" },
      publicJwk: { ...(await exportJWK(pair.publicKey)), kid: `ed-${id}`, alg: "EdDSA" },
    },
    hs256: { kid: `hs-${id}`, secret: base64url.encode(randomBytes(32)) },
  };
}

/**
 * The run's key for `algorithm` as an Outpost key set (private: it signs and verifies), made
 * by `make` (the bench's Outpost server passes the built package's own `createKeySet`).
 */
export function benchKeySet(
  keys: BenchKeys,
  algorithm: Algorithm,
  make: typeof createKeySet = createKeySet,
): Promise<KeySet> {
  return algorithm === "EdDSA"
    ? make({ jwks: { keys: [keys.ed25519.privateJwk] } })
    : make({ secret: base64url.decode(keys.hs256.secret), kid: keys.hs256.kid });
}

/** Signs bench tokens for one algorithm with the run's key. */
export interface TokenSigner {
  /** A token for instance `name` (default the one instance of the other workloads). */
  sign(sub: string, name?: string): Promise<string>;
}

export async function createSigner(keys: BenchKeys, algorithm: Algorithm): Promise<TokenSigner> {
  const keySet = await benchKeySet(keys, algorithm);
  return {
    sign: (sub, name = INSTANCE) =>
      issueToken(keySet, { sub, agent: AGENT, name, ttl: TOKEN_TTL_SECONDS }),
  };
}

/**
 * A token that looks right (same algorithm, `kid` and claims) but is signed by another key,
 * so a server must run the signature check to refuse it: the expensive refusal.
 */
export async function forgedToken(keys: BenchKeys): Promise<string> {
  const other = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
  const impostor = await createKeySet({
    jwks: {
      keys: [{ ...(await exportJWK(other.privateKey)), kid: keys.ed25519.kid, alg: "EdDSA" }],
    },
  });
  return issueToken(impostor, { sub: "intruder", agent: AGENT, name: INSTANCE, ttl: 300 });
}

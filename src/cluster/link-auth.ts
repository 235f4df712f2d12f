/**
 * Credentials of node links. A node proves it holds the cluster secret with a short JWT
 * (HS256 through `jose`, `aud` "outpost-node", `sub` its node id, `peer` the node it dials,
 * lifetime ≤ 60 s, single use); the accepting node answers with one of its own, bound to
 * the dialer's `jti`, so the dialer knows it reached the node it meant and not whatever now
 * listens at a stale address.
 */
import { randomUUID } from "node:crypto";
import { errors, jwtVerify, SignJWT } from "jose";
import { importSecret } from "../auth/keys.js";

/** `aud` of every link credential: no client token (whose `aud` is the app's) can pass. */
export const LINK_AUDIENCE = "outpost-node";
/** Longest lifetime a link credential may have, in seconds. */
export const MAX_CREDENTIAL_SECONDS = 60;
/** Lifetime of the credentials this module mints, in seconds. */
const CREDENTIAL_SECONDS = 30;
/** Node clocks disagree a little; more than this is an operations problem worth a refusal. */
const CLOCK_TOLERANCE_SECONDS = 5;
/** Longer than any credential this module mints; a longer header is not one. */
export const MAX_CREDENTIAL_LENGTH = 2048;

/** Why a link credential was refused. Goes to the log line, never to the peer. */
export type LinkRefusalReason =
  | "browser_origin"
  | "credential_missing"
  | "credential_invalid"
  | "credential_expired"
  | "lifetime_too_long"
  | "wrong_node"
  | "credential_replayed"
  /** This node is shutting down and takes no new links. */
  | "node_closing";

export class LinkAuthError extends Error {
  override readonly name = "LinkAuthError";
  constructor(readonly reason: LinkRefusalReason) {
    super(reason);
  }
}

/** Import the cluster secret once (at least 32 bytes); signing and verifying reuse the key. */
export function importClusterSecret(secret: string | Uint8Array): Promise<CryptoKey> {
  return importSecret(secret);
}

/** What a verified credential says. */
export interface LinkClaims {
  /** The node that minted it. */
  from: string;
  jti: string;
  /** Expiry, seconds since the epoch. */
  exp: number;
  nonce?: string;
}

/** Mint a credential from node `from` for node `to`; `nonce` binds an answer to a request. */
export async function mintLinkCredential(
  key: CryptoKey,
  from: string,
  to: string,
  nonce?: string,
): Promise<{ token: string; jti: string }> {
  const jti = randomUUID();
  const claims: Record<string, string> = { peer: to };
  if (nonce !== undefined) claims.nonce = nonce;
  const token = await new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setAudience(LINK_AUDIENCE)
    .setSubject(from)
    .setJti(jti)
    .setIssuedAt()
    .setExpirationTime(`${CREDENTIAL_SECONDS}s`)
    .sign(key);
  return { token, jti };
}

/**
 * Verify a credential meant for node `self`. Throws `LinkAuthError`; replay is the caller's
 * check (see `SpentCredentials`) because only the accepting side keeps that memory.
 */
export async function verifyLinkCredential(
  key: CryptoKey,
  token: string | undefined,
  self: string,
): Promise<LinkClaims> {
  if (token === undefined || token === "") throw new LinkAuthError("credential_missing");
  if (token.length > MAX_CREDENTIAL_LENGTH) throw new LinkAuthError("credential_invalid");
  let payload: Record<string, unknown>;
  try {
    ({ payload } = await jwtVerify(token, key, {
      algorithms: ["HS256"],
      audience: LINK_AUDIENCE,
      requiredClaims: ["sub", "jti", "iat", "exp", "peer"],
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
    }));
  } catch (error) {
    if (error instanceof errors.JWTExpired) throw new LinkAuthError("credential_expired");
    throw new LinkAuthError("credential_invalid");
  }
  const { sub, jti, iat, exp, peer, nonce } = payload;
  if (
    typeof sub !== "string" ||
    typeof jti !== "string" ||
    typeof iat !== "number" ||
    typeof exp !== "number" ||
    (nonce !== undefined && typeof nonce !== "string")
  ) {
    throw new LinkAuthError("credential_invalid");
  }
  if (exp - iat > MAX_CREDENTIAL_SECONDS) throw new LinkAuthError("lifetime_too_long");
  if (peer !== self) throw new LinkAuthError("wrong_node");
  return nonce === undefined ? { from: sub, jti, exp } : { from: sub, jti, exp, nonce };
}

/**
 * `jti`s already used, kept until they expire: a credential copied off the wire cannot open
 * a second link. Only nodes holding the secret can mint, so this stays small.
 */
export class SpentCredentials {
  #spent = new Map<string, number>();

  /** Record `claims.jti`; throws `credential_replayed` if it was already used. */
  spend(claims: LinkClaims, nowSeconds = Date.now() / 1000): void {
    if (this.#spent.has(claims.jti)) throw new LinkAuthError("credential_replayed");
    for (const [jti, exp] of this.#spent) {
      // Insertion order is nearly expiry order, so the sweep stops at the first live entry.
      if (exp + CLOCK_TOLERANCE_SECONDS >= nowSeconds) break;
      this.#spent.delete(jti);
    }
    this.#spent.set(claims.jti, claims.exp);
  }

  get size(): number {
    return this.#spent.size;
  }
}

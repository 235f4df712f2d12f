import { randomUUID } from "node:crypto";
import {
  decodeProtectedHeader,
  type JWSHeaderParameters,
  type JWTPayload,
  type JWTVerifyOptions,
  type JWTVerifyResult,
  jwtVerify,
  SignJWT,
} from "jose";
import { AuthError, toRefusal } from "./errors.js";
import { importSecret, type KeySet, type VerificationKeys } from "./keys.js";
import type { AuthClaims } from "./policy.js";
import type { ReplayStore } from "./replay.js";
import { matchesTarget, parseScope } from "./scope.js";

/** Longest token accepted; anything longer is refused before any crypto runs. */
export const MAX_TOKEN_LENGTH = 4096;
/** `aud` of Outpost's own tokens unless configured otherwise. */
export const DEFAULT_AUDIENCE = "outpost";
/** `iss` of Outpost's own tokens unless configured otherwise. */
export const DEFAULT_ISSUER = "outpost";

/** Three base64url segments; the signature may be empty so that `alg: none` gets its own refusal. */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;

/** What `issueToken` puts in a token. */
export interface IssueTokenOptions {
  /** The user (or service) the token speaks for. */
  sub: string;
  /** Kebab-case agent class name as in the URL (`my-agent`), `*`, or a prefix like `chat-*`. */
  agent: string;
  /** Instance name, `*`, or a prefix like `room-*`. */
  name: string;
  /** Granted scopes, e.g. `["connect", "rpc"]`; omitted means connect, rpc and state:write. */
  scope?: string | readonly string[];
  /** Lifetime in seconds (default 300). Keep it short: tokens in URLs end up in logs. */
  ttl?: number;
  /** `aud` claim (default `"outpost"`). */
  audience?: string | string[];
  /** `iss` claim (default `"outpost"`). */
  issuer?: string;
  /** Token id (default: a random UUID); needed for single-use tickets and revocation by id. */
  jti?: string;
  /** Further claims; the registered ones above always win. */
  claims?: Record<string, unknown>;
}

/**
 * Sign a short-lived token for one agent instance with the key set's current signing key.
 *
 * @example
 * const token = await issueToken(keys, { sub: user.id, agent: "chat", name: "room-1", ttl: 60 });
 * // client: useAgent({ agent: "chat", name: "room-1", query: { token } })
 */
export async function issueToken(keys: KeySet, options: IssueTokenOptions): Promise<string> {
  const { sub, agent, name, ttl = 300 } = options;
  for (const [claim, value] of [
    ["sub", sub],
    ["agent", agent],
    ["name", name],
  ] as const) {
    if (typeof value !== "string" || value === "") {
      throw new TypeError(`issueToken: \`${claim}\` must be a non-empty string`);
    }
  }
  if (typeof ttl !== "number" || !Number.isFinite(ttl) || ttl < 1) {
    throw new TypeError("issueToken: `ttl` must be a number of seconds, at least 1");
  }
  const signer = keys.signingKey();
  const now = Math.floor(Date.now() / 1000);
  const payload: JWTPayload = {
    ...options.claims,
    sub,
    agent,
    name,
    aud: options.audience ?? DEFAULT_AUDIENCE,
    iss: options.issuer ?? DEFAULT_ISSUER,
    jti: options.jti ?? randomUUID(),
    iat: now,
    nbf: now,
    exp: now + Math.floor(ttl),
  };
  if (options.scope !== undefined) payload.scope = formatScope(options.scope);
  return new SignJWT(payload)
    .setProtectedHeader({ alg: signer.algorithm, kid: signer.kid, typ: "JWT" })
    .sign(signer.key);
}

function formatScope(scope: string | readonly string[]): string {
  const list = typeof scope === "string" ? scope.split(" ").filter((s) => s !== "") : scope;
  for (const item of list) {
    if (typeof item !== "string" || !SCOPE_TOKEN.test(item)) {
      throw new TypeError(`issueToken: invalid scope "${String(item)}"`);
    }
  }
  return list.join(" ");
}

/** What `verifyToken` checks beyond the signature. */
export interface VerifyTokenOptions {
  /** The agent (kebab-case, from the URL) being opened. */
  agent: string;
  /** The instance being opened. */
  name: string;
  /** Accepted `aud` values (default `"outpost"`). */
  audience?: string | string[];
  /** Accepted `iss` values (default `"outpost"`). */
  issuer?: string | string[];
  /** Longest accepted lifetime `exp - (nbf ?? iat)`, in seconds (default 3600). */
  maxLifetime?: number;
  /** Seconds of clock skew allowed on `exp`, `nbf` and `iat` (default 5). */
  clockTolerance?: number;
  /** Scopes the token must grant. */
  requiredScope?: string | readonly string[];
  /** Spend the token's `jti` here: a second use is refused as `token_replayed`. */
  replay?: ReplayStore;
  /**
   * Accept tokens that carry no `agent`/`name` claims as valid for any agent and instance,
   * e.g. from an identity provider that cannot add them. Off by default: wildcards are explicit.
   */
  allowUnscoped?: boolean;
}

/**
 * Verify a token for one agent instance: size, structure, the key named by `kid` and its one
 * algorithm, signature, `exp` (required), `nbf`, `iat`, lifetime, `aud`, `iss`, then `agent`
 * and `name` (exact, `*`, or a `prefix-*` wildcard) and scopes. Throws `AuthError` only; the
 * error carries the token's fingerprint.
 *
 * @example
 * const claims = await verifyToken(keys, token, { agent: "chat", name: "room-1" });
 * claims.sub; // "user-1"
 * claims.scope; // ["connect", "rpc", "state:write"]
 */
export function verifyToken(
  keys: VerificationKeys,
  token: string,
  options: VerifyTokenOptions,
): Promise<AuthClaims> {
  return verifyTokenWith(keys, token, options, (claims) => claims);
}

/**
 * @internal `verifyToken`, with what the caller makes of the claims (`accept`) and of a
 * refusal (`refused`, before it is thrown) run in the same `then`: one promise on top of
 * jose's. Every await on the connect path costs a promise (and, with `getCurrentAgent`'s
 * AsyncLocalStorage active on Node 20, a hook call for each). What `accept` throws is a
 * refusal too.
 */
export function verifyTokenWith<T>(
  keys: VerificationKeys,
  token: string,
  options: VerifyTokenOptions,
  accept: (claims: AuthClaims) => T,
  refused?: (refusal: AuthError) => void,
): Promise<T> {
  const refusalOf = (error: unknown): AuthError => {
    const refusal = toRefusal(error, token);
    refused?.(refusal);
    return refusal;
  };
  const refuse = (error: unknown): never => {
    throw refusalOf(error);
  };
  let verified: Promise<JWTVerifyResult>;
  try {
    verified = verifySignature(keys, token, {
      audience: options.audience ?? DEFAULT_AUDIENCE,
      issuer: options.issuer ?? DEFAULT_ISSUER,
      clockTolerance: options.clockTolerance ?? 5,
    });
  } catch (error) {
    return Promise.reject(refusalOf(error));
  }
  return verified.then(({ payload }) => {
    let claims: AuthClaims | Promise<AuthClaims>;
    try {
      claims = checkClaims(payload, options);
      // A promise only when a single-use ticket is spent.
      if (!(claims instanceof Promise)) return accept(claims);
    } catch (error) {
      return refuse(error);
    }
    return claims.then(accept).then(undefined, refuse);
  }, refuse);
}

/** What `verifyToken` checks once jose has checked the signature and standard claims. */
function checkClaims(
  payload: JWTPayload,
  options: VerifyTokenOptions,
): AuthClaims | Promise<AuthClaims> {
  const tolerance = options.clockTolerance ?? 5;
  const maxLifetime = options.maxLifetime ?? 3600;
  const now = Math.floor(Date.now() / 1000);
  if (typeof payload.sub !== "string" || payload.sub === "") {
    throw new AuthError("token_malformed");
  }
  if (payload.iat !== undefined && payload.iat > now + tolerance) {
    throw new AuthError("token_not_yet_valid");
  }
  const exp = payload.exp as number;
  if (exp - (payload.nbf ?? payload.iat ?? now) > maxLifetime) {
    throw new AuthError("lifetime_too_long");
  }
  const agent = targetClaim(payload.agent, options.allowUnscoped);
  const name = targetClaim(payload.name, options.allowUnscoped);
  if (!matchesTarget(agent, options.agent) || !matchesTarget(name, options.name)) {
    throw new AuthError("scope_mismatch");
  }
  const scope = parseScope(payload.scope);
  if (scope === undefined) throw new AuthError("token_malformed");
  if (options.requiredScope !== undefined) {
    const required =
      typeof options.requiredScope === "string" ? [options.requiredScope] : options.requiredScope;
    if (!required.every((s) => scope.includes(s))) {
      throw new AuthError("scope_mismatch", "token scope does not allow this");
    }
  }
  // jose's payload is ours alone: completed in place rather than copied, since a live
  // connection keeps its claims for its whole life (`connection.auth`).
  payload.agent = agent;
  payload.name = name;
  payload.scope = scope;
  const claims = payload as AuthClaims;
  if (options.replay === undefined) return claims;
  if (typeof payload.jti !== "string" || payload.jti === "") {
    throw new AuthError("token_malformed", "single-use token needs a jti");
  }
  return Promise.resolve(options.replay.spend(payload.jti, exp)).then((spent) => {
    if (!spent) throw new AuthError("token_replayed");
    return claims;
  });
}

function targetClaim(claim: unknown, allowUnscoped = false): string {
  if (typeof claim === "string" && claim !== "") return claim;
  if (claim === undefined) {
    if (allowUnscoped) return "*";
    throw new AuthError("scope_mismatch", "token is not scoped to an agent");
  }
  throw new AuthError("token_malformed");
}

/**
 * The checks every token goes through, up to and including the standard claims. Throws
 * the refusals it finds before any crypto; jose's own errors reject unmapped (callers map
 * them with `toRefusal`).
 */
function verifySignature(
  keys: VerificationKeys,
  token: string,
  claims: { audience?: string | string[]; issuer?: string | string[]; clockTolerance: number },
): Promise<JWTVerifyResult> {
  if (typeof token !== "string" || token === "") throw new AuthError("token_missing");
  // Before any parsing or crypto: a huge token costs nothing to refuse.
  if (token.length > MAX_TOKEN_LENGTH) throw new AuthError("token_malformed", "token too long");
  if (!COMPACT_JWS.test(token)) throw new AuthError("token_malformed");
  const resolved = keys.resolveKey(protectedHeader(token));
  // A local key set answers at once; only a remote one needs a turn to find the key.
  if (isPromiseLike(resolved)) {
    return Promise.resolve(resolved).then((key) =>
      jwtVerify(token, key.key, joseOptions(claims, key.algorithm)),
    );
  }
  return jwtVerify(token, resolved.key, joseOptions(claims, resolved.algorithm));
}

/** Headers decoded lately, by their base64url text: every token of one key has the same. */
const decodedHeaders = new Map<string, JWSHeaderParameters>();
/** Enough for every key of a few key sets; forged headers cannot grow it past this. */
const MAX_DECODED_HEADERS = 64;

/**
 * The token's protected header, decoded, to pick the key with (`jose` decodes it again as
 * it verifies). Tokens signed by one key share the same header text, so a decoded copy is
 * kept for each of the last few: decoding is pure, and a copy is handed out, so that
 * nothing a key resolver does to it reaches the next token.
 */
function protectedHeader(token: string): JWSHeaderParameters {
  const text = token.slice(0, token.indexOf("."));
  const known = decodedHeaders.get(text);
  if (known !== undefined) return { ...known };
  let header: JWSHeaderParameters;
  try {
    header = decodeProtectedHeader({ protected: text });
  } catch {
    throw new AuthError("token_malformed");
  }
  if (decodedHeaders.size >= MAX_DECODED_HEADERS) decodedHeaders.clear();
  // Kept as a copy of its own: a slice would keep the whole token alive with it.
  decodedHeaders.set(` ${text}`.slice(1), { ...header });
  return header;
}

/**
 * jose's options, as one plain literal: jose reads an undefined `audience` or `issuer` as
 * absent. Not `{ ...a, b }`: V8 builds a literal that starts with a spread and goes on
 * with more properties on its slow path, about 1 µs each, on every token checked.
 */
function joseOptions(
  claims: { audience?: string | string[]; issuer?: string | string[]; clockTolerance: number },
  algorithm: string,
): JWTVerifyOptions {
  return {
    audience: claims.audience,
    issuer: claims.issuer,
    clockTolerance: claims.clockTolerance,
    requiredClaims: ["exp"],
    algorithms: [algorithm],
  };
}

function isPromiseLike<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as Partial<PromiseLike<T>>).then === "function";
}

/** Secrets imported for `verifyJWT`, so that each is turned into a `CryptoKey` once. */
const secretKeys = new Map<string, Promise<VerificationKeys>>();
const byteSecretKeys = new WeakMap<Uint8Array, Promise<VerificationKeys>>();
const MAX_CACHED_SECRETS = 16;

function secretVerifier(secret: string | Uint8Array): Promise<VerificationKeys> {
  const cached = typeof secret === "string" ? secretKeys.get(secret) : byteSecretKeys.get(secret);
  if (cached !== undefined) return cached;
  const made = importSecret(secret).then(
    (key): VerificationKeys => ({
      algorithms: ["HS256"],
      resolveKey(header) {
        // The shared-secret pattern has no kid; HS256 is the only algorithm it can mean.
        if (header.alg !== "HS256") throw new AuthError("algorithm_not_allowed");
        return { kid: undefined, algorithm: "HS256", key };
      },
    }),
  );
  if (typeof secret === "string") {
    if (secretKeys.size >= MAX_CACHED_SECRETS) secretKeys.clear();
    secretKeys.set(secret, made);
    made.catch(() => secretKeys.delete(secret));
  } else {
    byteSecretKeys.set(secret, made);
  }
  return made;
}

/**
 * The shared-secret check of a hand-written `onConnect`: verify an HS256 token with
 * `secret` (at least 32 bytes) and return its payload. Checks structure, algorithm,
 * signature, `exp` (required) and `nbf`, but no audience, issuer or agent scope; prefer
 * `tokenAuth()`, which checks all of them before your agent is touched.
 *
 * @example
 * async onConnect(connection, ctx) {
 *   const token = new URL(ctx.request.url).searchParams.get("token") ?? "";
 *   try {
 *     const payload = await verifyJWT(token, this.env.JWT_SECRET);
 *   } catch {
 *     connection.close(4001, "Unauthorized");
 *   }
 * }
 */
export async function verifyJWT(token: string, secret: string | Uint8Array): Promise<JWTPayload> {
  let keys: VerificationKeys;
  try {
    keys = await secretVerifier(secret);
  } catch (error) {
    if (error instanceof TypeError) throw error;
    throw toRefusal(error, token);
  }
  try {
    const { payload } = await verifySignature(keys, token, { clockTolerance: 5 });
    return payload;
  } catch (error) {
    throw toRefusal(error, token);
  }
}

import { formatRetryReason } from "../protocol/retry-hint.js";
import { DurableState } from "./durable-state.js";
import { AuthError, REASONS, toRefusal } from "./errors.js";
import { fingerprint } from "./fingerprint.js";
import type { KeySet, VerificationKeys } from "./keys.js";
import { isOriginAllowed, normalizeOrigins } from "./origin.js";
import type { AuthAction, AuthClaims, AuthPolicy, AuthRequest, AuthSession } from "./policy.js";
import { FailureLimiter, type RateLimitOptions } from "./rate-limit.js";
import { MemoryReplayStore, type ReplayStore } from "./replay.js";
import { Revocations } from "./revocations.js";
import type { SessionCookie } from "./session-cookie.js";
import { DEFAULT_AUDIENCE, DEFAULT_ISSUER, verifyTokenWith } from "./tokens.js";
import { type FoundToken, findToken, TRANSPORTS, type Transport } from "./transports.js";

/** Options of `tokenAuth`. */
export interface TokenAuthOptions {
  /** Keys that verify tokens: a `KeySet`, a `remoteKeySet()`, or a promise of one. */
  keys: VerificationKeys | Promise<VerificationKeys>;
  /** Longest accepted token lifetime `exp - (nbf ?? iat)`, in seconds (default 3600). */
  maxLifetime?: number;
  /** Seconds of clock skew allowed (default 5). */
  clockTolerance?: number;
  /** Query parameter that carries the token (default `token`). */
  param?: string;
  /** Accepted `aud` values (default `"outpost"`). */
  audience?: string | string[];
  /** Accepted `iss` values (default `"outpost"`). */
  issuer?: string | string[];
  /** Where tokens are read from (default: query, protocol, header, and cookie when `cookie` is set). */
  transports?: readonly Transport[];
  /** Accept this session cookie too; requires `allowedOrigins`. */
  cookie?: SessionCookie;
  /**
   * Exact origins (`https://app.example.com`) browsers may connect from. Required for cookie
   * auth; when set, token auth from any other browser origin is refused too. Requests
   * without an `Origin` header (non-browser clients) are not affected, except for cookies.
   */
  allowedOrigins?: readonly string[];
  /** Single-use tickets: `true` for an in-memory store, or a shared `ReplayStore`. */
  singleUse?: boolean | ReplayStore;
  /** Failed attempts allowed per client address (default 20 a minute), or `false`. */
  rateLimit?: RateLimitOptions | false;
  /** `close` (default): accept the upgrade and close 4001/4003; `http`: refuse with 401/403. */
  rejectWith?: "close" | "http";
  /** Serve the key set's public keys at `/.well-known/jwks.json` (default false). */
  publishJwks?: boolean;
  /** Accept tokens without `agent`/`name` claims for any agent (identity-provider tokens). */
  allowUnscoped?: boolean;
  /**
   * Milliseconds between reloads (and prunes) of the durable auth state, for changes made
   * by other nodes that the store cannot push (default 30,000).
   */
  stateReloadInterval?: number;
}

/**
 * The auth policy of an Outpost server: verifies a token (or session cookie) before the
 * agent is touched, and re-checks expiry, revocation and scope on every action.
 *
 * @example
 * const keys = await loadKeySet("outpost-keys.json");
 * serve({ agents: { Chat }, auth: tokenAuth({ keys, allowedOrigins: ["https://app.example.com"] }) });
 */
export function tokenAuth(options: TokenAuthOptions): AuthPolicy {
  const {
    maxLifetime = 3600,
    clockTolerance = 5,
    param = "token",
    audience = DEFAULT_AUDIENCE,
    issuer = DEFAULT_ISSUER,
    cookie,
    rejectWith = "close",
    allowUnscoped = false,
    stateReloadInterval = 30_000,
  } = options;
  if (options.keys === undefined || options.keys === null) {
    throw new TypeError("tokenAuth: `keys` is required, e.g. await createKeySet({ secret })");
  }
  if (!(stateReloadInterval > 0)) {
    throw new TypeError("tokenAuth: `stateReloadInterval` must be a positive number of ms");
  }
  if (!(maxLifetime > 0) || !(clockTolerance >= 0)) {
    throw new TypeError(
      "tokenAuth: `maxLifetime` must be positive and `clockTolerance` not negative",
    );
  }
  if (rejectWith !== "close" && rejectWith !== "http") {
    throw new TypeError('tokenAuth: `rejectWith` must be "close" or "http"');
  }
  const transports = new Set<Transport>(
    options.transports ?? TRANSPORTS.filter((t) => t !== "cookie" || cookie !== undefined),
  );
  for (const transport of transports) {
    if (!TRANSPORTS.includes(transport)) {
      throw new TypeError(`tokenAuth: unknown transport "${transport}"`);
    }
  }
  if (transports.has("cookie") && cookie === undefined) {
    throw new TypeError("tokenAuth: the cookie transport needs `cookie: sessionCookie(...)`");
  }
  const origins =
    options.allowedOrigins === undefined ? undefined : normalizeOrigins(options.allowedOrigins);
  if (cookie !== undefined && (origins === undefined || origins.size === 0)) {
    // Browsers send cookies on cross-site WebSocket upgrades; without an allowlist any site
    // could open a connection as the signed-in user.
    throw new TypeError("tokenAuth: cookie auth needs `allowedOrigins`");
  }
  const keys = Promise.resolve(options.keys);
  keys.catch(() => {});
  const replay =
    options.singleUse === true
      ? new MemoryReplayStore()
      : options.singleUse
        ? options.singleUse
        : undefined;
  const limiter =
    options.rateLimit === false ? undefined : new FailureLimiter(options.rateLimit ?? {});
  // A token stamped up to `clockTolerance` after a revocation, living `maxLifetime`, and
  // accepted up to `clockTolerance` past its `exp`: that long can an entry still refuse one.
  const revocations = new Revocations(maxLifetime + 2 * clockTolerance, clockTolerance);
  const durable = new DurableState(
    revocations,
    replay instanceof MemoryReplayStore ? replay : undefined,
    stateReloadInterval,
  );
  // Every spend goes through memory first (fast, and refuses a replay on this node at once),
  // then through the durable store, which is the one that knows about other nodes and restarts.
  const spender: ReplayStore | undefined =
    replay === undefined
      ? undefined
      : {
          async spend(jti, expiresAt) {
            if (!(await replay.spend(jti, expiresAt))) return false;
            try {
              return await durable.spendTicket(jti, expiresAt * 1000);
            } catch {
              // Fail closed, and say it is ours: a broken store is not a malformed token.
              throw new AuthError("internal_error");
            }
          },
        };
  const findOptions = {
    param,
    transports,
    ...(cookie !== undefined && { cookie }),
  };

  /** The token a request carries, for the fingerprint of a refusal that never reads it. */
  function presentedToken(request: AuthRequest): string | undefined {
    try {
      return findToken(request, findOptions)?.token;
    } catch {
      return undefined;
    }
  }

  /** Refuse before any crypto when this address has failed too often. */
  function checkRateLimit(request: AuthRequest, token: () => string | undefined): void {
    // No address (a fetch-style host that did not pass one): no bucket, rather than one
    // bucket shared by every caller, which one attacker could fill for everybody.
    if (limiter === undefined || request.remoteAddress === undefined) return;
    const wait = limiter.retryAfter(request.remoteAddress);
    if (wait <= 0) return;
    const presented = token();
    throw new AuthError(
      "too_many_attempts",
      formatRetryReason(REASONS.too_many_attempts.message, wait),
      {
        retryAfterMs: wait,
        ...(presented !== undefined && { fingerprint: fingerprint(presented) }),
      },
    );
  }

  function checkOrigin(request: AuthRequest, required: boolean): void {
    if (origins === undefined) return;
    const origin = request.headers.get("origin");
    if (origin === null && !required) return;
    if (!isOriginAllowed(origins, origin)) throw new AuthError("origin_not_allowed");
  }

  /** Count the failure and make sure the refusal is an AuthError with the token's fingerprint. */
  function refuse(request: AuthRequest, error: unknown, token: string | undefined): never {
    const refusal = toRefusal(error, token);
    count(request, refusal);
    throw refusal;
  }

  /**
   * Only a credential that failed counts: not an origin refusal (a foreign page must not
   * lock its visitors out of the real app), and never an outage on our side.
   */
  function count(request: AuthRequest, refusal: AuthError): void {
    if (refusal.counted && request.remoteAddress !== undefined) {
      limiter?.fail(request.remoteAddress);
    }
  }

  /**
   * The token's claims, then the checks that need the policy (revocation, the action's
   * scope), as a session. Refusals reject through `refuse`, counted.
   */
  function verify(
    verifier: VerificationKeys,
    request: AuthRequest,
    found: FoundToken,
  ): Promise<AuthSession> {
    const accept = (claims: AuthClaims) => sessionOf(claims, request, found);
    if (found.transport === "cookie" && cookie !== undefined) {
      const refused = (error: unknown) => refuse(request, error, found.token);
      return cookie
        .verify(found.token, { agent: request.agent, name: request.name, clockTolerance })
        .then((claims) => {
          try {
            return accept(claims);
          } catch (error) {
            return refused(error);
          }
        }, refused);
    }
    // The claims' checks and the session in the same `then` as jose's answer: each promise
    // on the connect path costs.
    return verifyTokenWith(
      verifier,
      found.token,
      {
        agent: request.agent,
        name: request.name,
        audience,
        issuer,
        maxLifetime,
        clockTolerance,
        allowUnscoped,
        // A cookie is sent again on every reconnect, so only explicit tokens are single-use.
        ...(spender !== undefined && { replay: spender }),
      },
      accept,
      (refusal) => count(request, refusal),
    );
  }

  function sessionOf(claims: AuthClaims, request: AuthRequest, found: FoundToken): AuthSession {
    if (revocations.isRevoked(claims)) throw new AuthError("token_revoked");
    const action: AuthAction = request.websocket ? "connect" : "http";
    if (!claims.scope.includes(action)) {
      throw new AuthError("scope_mismatch", `token scope does not allow ${action}`);
    }
    // One plain literal: a literal with spreads between its properties is built on V8's
    // slow path. `expiresAt` and `protocol` are left undefined when there is none.
    return {
      claims,
      expiresAt: typeof claims.exp === "number" ? claims.exp * 1000 : undefined,
      fingerprint: fingerprint(found.token),
      protocol: found.protocol,
    };
  }

  /** Find the token and verify it; every refusal rejects (never throws). */
  function authenticateWith(
    verifier: VerificationKeys,
    request: AuthRequest,
  ): Promise<AuthSession> {
    let found: FoundToken | undefined;
    try {
      found = findToken(request, findOptions);
      checkOrigin(request, found?.transport === "cookie");
      if (found === undefined) throw new AuthError("token_missing");
    } catch (error) {
      return failed(request, error, found?.token);
    }
    return verify(verifier, request, found);
  }

  /** `refuse`, as a rejection. */
  function failed(request: AuthRequest, error: unknown, token: string | undefined): Promise<never> {
    try {
      refuse(request, error, token);
    } catch (refusal) {
      return Promise.reject(refusal);
    }
  }

  /** The key set once it has loaded: from then on a request does not wait a turn for it. */
  let loaded: VerificationKeys | undefined;
  keys.then(
    (verifier) => {
      loaded = verifier;
    },
    () => {},
  );

  const policy: AuthPolicy = {
    rejectWithHttp: rejectWith === "http",
    credentialParams: transports.has("query") ? [param] : [],

    authenticate(request) {
      try {
        if (limiter !== undefined) checkRateLimit(request, () => presentedToken(request));
      } catch (error) {
        return Promise.reject(error);
      }
      if (loaded !== undefined) return authenticateWith(loaded, request);
      // A key set that failed to load is the server's fault: it surfaces as an internal error.
      return keys.then((verifier) => authenticateWith(verifier, request));
    },

    async refresh(current, token, request) {
      checkRateLimit(request, () => (typeof token === "string" ? token : undefined));
      const verifier = await keys;
      try {
        checkOrigin(request, false);
        if (typeof token !== "string" || token === "") throw new AuthError("token_missing");
      } catch (error) {
        refuse(request, error, typeof token === "string" ? token : undefined);
      }
      // `verify` refuses (and counts) what it finds itself.
      const next = await verify(verifier, request, { token, transport: "query" });
      if (next.claims.sub !== current.claims.sub) {
        refuse(request, new AuthError("subject_mismatch"), token);
      }
      return {
        ...next,
        ...(current.protocol !== undefined && { protocol: current.protocol }),
      };
    },

    authorize(session: AuthSession, action: AuthAction) {
      // Runs on every frame: allocate nothing unless refusing.
      if (session.expiresAt !== undefined && Date.now() >= session.expiresAt) {
        throw new AuthError("token_expired", undefined, { fingerprint: session.fingerprint });
      }
      if (revocations.isRevoked(session.claims)) {
        throw new AuthError("token_revoked", undefined, { fingerprint: session.fingerprint });
      }
      if (!session.claims.scope.includes(action)) {
        throw new AuthError("scope_mismatch", `token scope does not allow ${action}`, {
          fingerprint: session.fingerprint,
        });
      }
    },

    isRevoked(session) {
      return revocations.isRevoked(session.claims);
    },

    revoke(target) {
      const { sub, jti } = target ?? {};
      if ((sub === undefined || sub === "") && (jti === undefined || jti === "")) {
        throw new TypeError("revoke() needs a `sub` or a `jti`");
      }
      // In memory at once, so the very next check refuses; then written through.
      const entries = revocations.revoke({
        ...(typeof sub === "string" && sub !== "" && { sub }),
        ...(typeof jti === "string" && jti !== "" && { jti }),
      });
      const written = durable.addRevocations(entries);
      // A caller that does not await must not crash the process when the store fails.
      written.catch(() => {});
      return written;
    },

    useStateStore(store) {
      return durable.use(store);
    },

    onRevocation(listener) {
      return durable.onRevocation(listener);
    },
  };

  if (options.publishJwks === true) {
    const local = hasPublicKeys(options.keys);
    if (local !== false) {
      policy.jwks = async () => {
        const set = await keys;
        return isKeySet(set) ? set.jwks() : { keys: [] };
      };
    }
  }
  return policy;
}

function isKeySet(keys: unknown): keys is KeySet {
  return typeof (keys as Partial<KeySet> | null)?.jwks === "function";
}

/** False when the key set is known to hold nothing publishable (a secret, or remote keys). */
function hasPublicKeys(keys: VerificationKeys | Promise<VerificationKeys>): boolean | undefined {
  if (typeof (keys as Promise<unknown>).then === "function") return undefined;
  return isKeySet(keys) && keys.jwks().keys.length > 0;
}

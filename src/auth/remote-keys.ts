import { createLocalJWKSet, createRemoteJWKSet, type RemoteJWKSetOptions } from "jose";
import { AuthError, fromJoseError } from "./errors.js";
import type { VerificationKeys } from "./keys.js";

/** Options of `remoteKeySet`: the algorithms you accept, plus jose's fetch and cache settings. */
export interface RemoteKeySetOptions extends RemoteJWKSetOptions {
  /** Algorithms to accept, e.g. `["RS256"]`. Required: nothing is inferred from the token. */
  algorithms: readonly string[];
  /**
   * Milliseconds after a failed fetch during which no new fetch is tried (default 5,000):
   * tokens are checked against the last good keys meanwhile, or refused as
   * `keys_unavailable` with that wait as the retry hint.
   */
  failureCooldown?: number;
}

/** jose errors that say "this token names no key we have", which is the token's fault. */
const KEY_SELECTION_ERRORS = new Set([
  "ERR_JWKS_NO_MATCHING_KEY",
  "ERR_JWKS_MULTIPLE_MATCHING_KEYS",
  "ERR_JOSE_ALG_NOT_ALLOWED",
  "ERR_JOSE_NOT_SUPPORTED",
]);

/**
 * Verify tokens from your own identity provider with the JWKS it publishes. Keys are
 * fetched and cached by jose, which keeps at most one fetch in flight; an unknown `kid`
 * triggers a refetch (rate-limited by jose's `cooldownDuration`). Verify only: it cannot sign.
 *
 * An outage of the provider (refused, reset, timeout, 5xx, bad JSON) is never the client's
 * fault: tokens keep verifying with the last keys fetched, and when there are none the
 * refusal is `keys_unavailable` (close 1013, HTTP 503, with a retry hint), which the
 * failed-attempt limit does not count. After a failure no fetch is tried for `failureCooldown`.
 *
 * @example
 * const keys = remoteKeySet("https://id.example.com/.well-known/jwks.json", { algorithms: ["RS256"] });
 * export const auth = tokenAuth({ keys, issuer: "https://id.example.com/", audience: "chat" });
 */
export function remoteKeySet(url: string | URL, options: RemoteKeySetOptions): VerificationKeys {
  const { algorithms, failureCooldown = 5_000, ...joseOptions } = options;
  if (!Array.isArray(algorithms) || algorithms.length === 0) {
    throw new TypeError(
      "remoteKeySet: name the algorithms you accept, e.g. { algorithms: ['RS256'] }",
    );
  }
  for (const alg of algorithms) {
    if (alg === "none" || alg.startsWith("HS")) {
      throw new TypeError(`remoteKeySet: "${alg}" cannot be verified with published keys`);
    }
  }
  if (!(failureCooldown >= 0)) {
    throw new TypeError("remoteKeySet: `failureCooldown` must be a number of milliseconds");
  }
  const allowed = [...algorithms];
  const remote = createRemoteJWKSet(new URL(url), joseOptions);
  const flattened = { payload: "", signature: "" };
  let failedUntil = 0;
  /** The last good keys, built once per outage from what jose last fetched. */
  let lastGood: ReturnType<typeof createLocalJWKSet> | undefined;

  function unavailable(): AuthError {
    return new AuthError("keys_unavailable", undefined, {
      retryAfterMs: Math.max(failedUntil - Date.now(), 1000),
    });
  }

  /** While the provider is down: the keys fetched before, or a transient refusal. */
  async function fromLastGood(header: Parameters<typeof remote>[0]): Promise<CryptoKey> {
    if (lastGood === undefined) {
      const jwks = remote.jwks();
      if (jwks === undefined) throw unavailable();
      lastGood = createLocalJWKSet(jwks);
    }
    try {
      return (await lastGood(header, flattened)) as CryptoKey;
    } catch (error) {
      // A kid we do not know may be a key the provider added since: not the client's fault.
      if ((error as { code?: unknown }).code === "ERR_JWKS_NO_MATCHING_KEY") throw unavailable();
      throw fromJoseError(error);
    }
  }

  return {
    algorithms: allowed,
    async resolveKey(header) {
      if (typeof header.alg !== "string" || !allowed.includes(header.alg)) {
        throw new AuthError("algorithm_not_allowed");
      }
      if (header.kid !== undefined && typeof header.kid !== "string") {
        throw new AuthError("token_malformed");
      }
      let key: CryptoKey;
      if (Date.now() < failedUntil) {
        key = await fromLastGood(header);
      } else {
        try {
          key = (await remote(header, flattened)) as CryptoKey;
        } catch (error) {
          const code = (error as { code?: unknown } | null)?.code;
          if (typeof code === "string" && KEY_SELECTION_ERRORS.has(code)) {
            throw fromJoseError(error);
          }
          // Anything else is the fetch failing (network, timeout, status, JSON, JWKS shape).
          failedUntil = Date.now() + failureCooldown;
          lastGood = undefined;
          key = await fromLastGood(header);
        }
      }
      return { kid: header.kid, algorithm: header.alg, key };
    },
  };
}

import { AuthError } from "./errors.js";
import { fingerprint } from "./fingerprint.js";
import { createKeySet, type KeySet } from "./keys.js";
import type { AuthClaims, HeaderReader } from "./policy.js";
import { DEFAULT_ISSUER, issueToken, verifyToken } from "./tokens.js";
import { readCookie } from "./transports.js";

/** Audience of session-cookie tokens, distinct from URL tokens so one cannot stand in for the other. */
export const SESSION_AUDIENCE = "outpost:session";

const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Options of `sessionCookie`. */
export interface SessionCookieOptions {
  /** Keys to sign with (give `keys` or `secret`). */
  keys?: KeySet | Promise<KeySet>;
  /** Shared secret (HS256, at least 32 bytes) to sign with, instead of `keys`. */
  secret?: string | Uint8Array;
  /** Cookie name (default `outpost_session`). A `__Host-` name needs `secure` and path `/`. */
  name?: string;
  /** Lifetime in seconds of the cookie and of the token in it (default 3600). */
  ttl?: number;
  /** `SameSite` attribute (default `Strict`). `None` requires `secure`. */
  sameSite?: "Strict" | "Lax" | "None";
  /** `Secure` attribute (default true); turn off only for http://localhost development. */
  secure?: boolean;
  /** `Path` attribute (default `/`). */
  path?: string;
  /** `iss` of the session tokens (default `outpost`). */
  issuer?: string;
}

/** Who a session cookie speaks for; agent and instance default to `*` (any). */
export interface SessionCookieClaims {
  sub: string;
  agent?: string;
  name?: string;
  scope?: string | readonly string[];
}

/**
 * A signed, HTTP-only session cookie for same-origin clients. Give it to
 * `tokenAuth({ cookie, allowedOrigins })`: the cookie is accepted only from origins on the
 * allowlist, because a browser attaches it to WebSocket upgrades from any site.
 */
export interface SessionCookie {
  /** Cookie name. */
  readonly name: string;
  /** Lifetime in seconds; also the longest lifetime accepted for the token in the cookie. */
  readonly ttl: number;
  /** `aud` of the tokens in this cookie. */
  readonly audience: string;
  /** `iss` of the tokens in this cookie. */
  readonly issuer: string;
  /** A `Set-Cookie` header value that starts a session for `claims`. */
  issue(claims: SessionCookieClaims): Promise<string>;
  /** A `Set-Cookie` header value that deletes the cookie (log out). */
  clear(): string;
  /**
   * The cookie's token in a request, or undefined. Throws `token_ambiguous` when the cookie
   * is sent more than once: that is how a sibling subdomain plants its own (cookie tossing).
   */
  read(headers: HeaderReader): string | undefined;
  /** Verify a token read from this cookie for one agent instance; throws `AuthError`. */
  verify(
    token: string,
    target: { agent: string; name: string; clockTolerance?: number },
  ): Promise<AuthClaims>;
  /** The keys the cookie's tokens are signed and verified with. */
  keys(): Promise<KeySet>;
}

/**
 * Make a session cookie.
 *
 * @example
 * const cookie = sessionCookie({ secret: process.env.SESSION_SECRET! });
 * // after login, in your HTTP handler:
 * res.setHeader("Set-Cookie", await cookie.issue({ sub: user.id }));
 * // and for the agents:
 * export const auth = tokenAuth({ keys, cookie, allowedOrigins: ["https://app.example.com"] });
 */
export function sessionCookie(options: SessionCookieOptions): SessionCookie {
  const {
    name = "outpost_session",
    ttl = 3600,
    sameSite = "Strict",
    secure = true,
    path = "/",
    issuer = DEFAULT_ISSUER,
  } = options;
  if (!COOKIE_NAME.test(name)) throw new TypeError(`sessionCookie: invalid cookie name "${name}"`);
  if (typeof ttl !== "number" || !Number.isInteger(ttl) || ttl < 1) {
    throw new TypeError("sessionCookie: `ttl` must be a whole number of seconds, at least 1");
  }
  if (!["Strict", "Lax", "None"].includes(sameSite)) {
    throw new TypeError('sessionCookie: `sameSite` must be "Strict", "Lax" or "None"');
  }
  if (sameSite === "None" && !secure) {
    throw new TypeError("sessionCookie: browsers drop SameSite=None cookies without Secure");
  }
  if (name.startsWith("__Host-") && (!secure || path !== "/")) {
    throw new TypeError("sessionCookie: a __Host- cookie needs `secure` and path `/`");
  }
  if (!path.startsWith("/") || /[;\s]/.test(path)) {
    throw new TypeError("sessionCookie: `path` must start with / and hold no ; or spaces");
  }
  if ((options.keys === undefined) === (options.secret === undefined)) {
    throw new TypeError("sessionCookie: give exactly one of `keys` or `secret`");
  }
  const keys: Promise<KeySet> =
    options.keys !== undefined
      ? Promise.resolve(options.keys)
      : createKeySet({ secret: options.secret as string | Uint8Array });
  // A bad secret is reported by issue()/keys(); never as an unhandled rejection.
  keys.catch(() => {});
  const attributes = `Path=${path}; HttpOnly; SameSite=${sameSite}${secure ? "; Secure" : ""}`;
  return {
    name,
    ttl,
    audience: SESSION_AUDIENCE,
    issuer,
    keys: () => keys,
    async issue(claims) {
      const token = await issueToken(await keys, {
        sub: claims.sub,
        agent: claims.agent ?? "*",
        name: claims.name ?? "*",
        ...(claims.scope !== undefined && { scope: claims.scope }),
        ttl,
        audience: SESSION_AUDIENCE,
        issuer,
      });
      return `${name}=${token}; Max-Age=${ttl}; ${attributes}`;
    },
    read(headers) {
      const values = readCookie(headers, name);
      if (values.length > 1) {
        throw new AuthError("token_ambiguous", "session cookie sent more than once", {
          fingerprint: fingerprint(values[0] ?? ""),
        });
      }
      return values[0] === "" ? undefined : values[0];
    },
    async verify(token, target) {
      return verifyToken(await keys, token, {
        agent: target.agent,
        name: target.name,
        audience: SESSION_AUDIENCE,
        issuer,
        maxLifetime: ttl,
        ...(target.clockTolerance !== undefined && { clockTolerance: target.clockTolerance }),
      });
    },
    clear() {
      return `${name}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; ${attributes}`;
    },
  };
}

/**
 * The contract between the server and the auth layer. The server knows nothing about
 * tokens; it asks one question at each step: "who is this, and may they do X?". The auth
 * layer knows nothing about agents beyond the two names it is asked about.
 */

/** Verified token claims, as put on `connection.auth`. */
export interface AuthClaims {
  sub: string;
  /** Kebab-case agent class name as in the URL, or `*`. */
  agent: string;
  /** Instance name, or `*`. */
  name: string;
  /** Granted scopes, e.g. `["connect", "rpc", "state:write"]`. */
  scope: string[];
  exp?: number;
  iat?: number;
  nbf?: number;
  jti?: string;
  aud?: string | string[];
  iss?: string;
  [claim: string]: unknown;
}

/** Read access to request headers, by case-insensitive name. `Headers` satisfies it. */
export interface HeaderReader {
  get(name: string): string | null;
}

/** What is asked of the auth layer when a connection (or an HTTP request) arrives. */
export interface AuthRequest {
  /** Kebab-case agent class name from the URL. */
  agent: string;
  /** URL-decoded instance name. */
  name: string;
  /** Full request URL (carries the query string). */
  url: URL;
  /** Request headers (upgrade headers for a WebSocket); a `Headers` object will do. */
  headers: HeaderReader;
  /**
   * Client address as seen by the server (after any trusted-proxy handling); `undefined`
   * when the host did not say (then no per-address limit applies).
   */
  remoteAddress: string | undefined;
  /** True for a WebSocket upgrade, false for plain HTTP. */
  websocket: boolean;
}

/** A successful authentication. */
export interface AuthSession {
  claims: AuthClaims;
  /** Milliseconds since the epoch at which the credentials stop being valid. */
  expiresAt?: number;
  /** Short non-reversible fingerprint of the credential, safe to log. */
  fingerprint: string;
  /** Subprotocol the server must select in the handshake (token sent as a subprotocol). */
  protocol?: string;
}

/** What an authenticated connection may do after it is open. */
export type AuthAction = "connect" | "rpc" | "state:write" | "message" | "http";

/**
 * Implemented by `tokenAuth()` (and anything else that wants to guard agents).
 * Every method that refuses throws an `AuthError` (see ./errors.ts), never anything else;
 * its `closeCode` (4001, 4003, 4008, 4009) and `code` go to the client and the log.
 */
export interface AuthPolicy {
  /** Who is this, and may they open `agent/name`? */
  authenticate(request: AuthRequest): Promise<AuthSession>;
  /** In-band refresh: verify `token` as a replacement for `current` (same `sub`). */
  refresh(current: AuthSession, token: string, request: AuthRequest): Promise<AuthSession>;
  /** May this session do `action` now? Throws AuthError when not (expired, scope, revoked). */
  authorize(session: AuthSession, action: AuthAction): void;
  /** Is this session revoked (by `sub` or `jti`)? Checked when `revoke()` runs. */
  isRevoked(session: AuthSession): boolean;
  /** Revoke by subject or token id; the server closes matching live connections 4009. */
  revoke(target: { sub?: string; jti?: string }): void | Promise<void>;
  /** Refuse with an HTTP 401/403 response instead of accepting and closing 4001/4003. */
  readonly rejectWithHttp: boolean;
  /** Public JWKS to serve at `/.well-known/jwks.json`, when publishing is enabled. */
  jwks?(): Promise<{ keys: object[] }> | { keys: object[] };
}

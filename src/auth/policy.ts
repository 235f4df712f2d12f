import type { AuthStateStore, RevocationEntry } from "./state-store.js";

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

/**
 * What a caller may do; each is a scope of the same name (see docs/authentication.md).
 * `connect` opens a socket and receives state, `rpc` calls `@callable` methods,
 * `state:write` sends state frames, `message` sends frames that reach `onMessage`, and
 * `http` sends requests to `onRequest`. A token without a `scope` claim may do all of them.
 */
export type AuthAction = "connect" | "rpc" | "state:write" | "message" | "http";

/**
 * Implemented by `tokenAuth()` (and anything else that wants to guard agents).
 * Every method that refuses throws an `AuthError` (see ./errors.ts), never anything else;
 * its `closeCode` and `code` (see `REASONS` in ./errors.ts) go to the client and the log.
 */
export interface AuthPolicy {
  /** Who is this, and may they open `agent/name`: `connect` for a socket, `http` for a request? */
  authenticate(request: AuthRequest): Promise<AuthSession>;
  /** In-band refresh: verify `token` as a replacement for `current` (same `sub`). */
  refresh(current: AuthSession, token: string, request: AuthRequest): Promise<AuthSession>;
  /** May this session do `action` now? Throws AuthError when not (expired, scope, revoked). */
  authorize(session: AuthSession, action: AuthAction): void;
  /** Is this session revoked (by `sub` or `jti`)? Checked when `revoke()` runs. */
  isRevoked(session: AuthSession): boolean;
  /**
   * Revoke by subject or token id; the server closes matching live connections 4009. Takes
   * effect in memory before it returns; the promise settles once a state store has it.
   */
  revoke(target: { sub?: string; jti?: string }): void | Promise<void>;
  /**
   * Keep revocations and spent tickets in `store`: load them now, write every change
   * through. The server calls it with a store in its data directory before serving.
   */
  useStateStore?(store: AuthStateStore): Promise<void>;
  /**
   * Hear of revocations made elsewhere (another node, through the state store), so that
   * matching live connections can be closed 4009 at once; returns a stop function.
   */
  onRevocation?(listener: (entry: RevocationEntry) => void): () => void;
  /** Query parameters that carry credentials, for the log redaction (e.g. `["token"]`). */
  readonly credentialParams?: readonly string[];
  /** Refuse with an HTTP 401/403 response instead of accepting and closing 4001/4003. */
  readonly rejectWithHttp: boolean;
  /** Public JWKS to serve at `/.well-known/jwks.json`, when publishing is enabled. */
  jwks?(): Promise<{ keys: object[] }> | { keys: object[] };
}

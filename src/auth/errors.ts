import { fingerprint } from "./fingerprint.js";
/**
 * Every refusal of the auth layer, one stable code per reason. The code goes to the log and
 * to the client; the close code tells a WebSocket client what to do next (see
 * `src/protocol/close-codes.ts`), the status does the same for a plain HTTP refusal.
 */

/** Why a credential was refused. Stable: callers and tests match on these, never on text. */
export type AuthErrorCode =
  /** No token in any place the policy looks. */
  | "token_missing"
  /** Not a compact JWS, bad base64url or JSON, a required claim missing or of the wrong type, or too long. */
  | "token_malformed"
  /** The signature does not verify with the key the `kid` names. */
  | "signature_invalid"
  /** `exp` is in the past (also: a live session whose credentials ran out). */
  | "token_expired"
  /** `nbf` (or `iat`) is in the future. */
  | "token_not_yet_valid"
  /** `exp - (nbf ?? iat)` is longer than the verifier allows. */
  | "lifetime_too_long"
  /** `aud` or `iss` is not one this verifier accepts. */
  | "audience_mismatch"
  /** Valid identity, but the token is not for this agent, instance or action. */
  | "scope_mismatch"
  /** The header's `alg` is not the one algorithm of the key (or of the key set). */
  | "algorithm_not_allowed"
  /** No key with the token's `kid` (or no `kid` where several keys could verify). */
  | "unknown_key"
  /** A single-use ticket presented a second time. */
  | "token_replayed"
  /** The subject or the token was revoked. */
  | "token_revoked"
  /** The request's `Origin` is not on the allowlist. */
  | "origin_not_allowed"
  /** Too many failed attempts from this client address; see `retryAfterMs`. */
  | "too_many_attempts"
  /** A token in two places at once (e.g. query and header), or a cookie set twice. */
  | "token_ambiguous"
  /** A refresh token for another subject than the session's. */
  | "subject_mismatch"
  /** Nothing is served at that path. */
  | "not_found"
  /** No agent class by that URL name on this server. */
  | "unknown_agent"
  /** The instance name cannot be used (empty, too long, a forbidden character). */
  | "bad_instance_name"
  /** The request URL is longer than the server accepts. */
  | "url_too_long"
  /** Not a valid WebSocket handshake (method, version, key). */
  | "bad_handshake"
  /** The server is shutting down: reconnect to another process or later. */
  | "shutting_down"
  /** The instance already has as many connections as it accepts. */
  | "too_many_connections"
  /** Every live-instance slot of this process holds a busy instance. */
  | "too_many_instances"
  /** The agent's `onStart` threw (or its database could not be opened). */
  | "agent_failed_to_start"
  /** Anything else that went wrong on the server's side. */
  | "internal_error";

/** WebSocket close code of each refusal: 4001 fetch new credentials, 4003 stop, 4008 wait, 4009 revoked. */
export type AuthCloseCode = 1001 | 1011 | 1013 | 4001 | 4003 | 4004 | 4008 | 4009;

/** HTTP status of each refusal, for the reject-with-HTTP mode and plain requests. */
export type AuthStatus = 400 | 401 | 403 | 404 | 414 | 429 | 500 | 503;

const REASONS: Record<
  AuthErrorCode,
  { closeCode: AuthCloseCode; message: string; status?: AuthStatus }
> = {
  token_missing: { closeCode: 4001, message: "token missing" },
  token_malformed: { closeCode: 4001, message: "token malformed" },
  signature_invalid: { closeCode: 4001, message: "token signature invalid" },
  token_expired: { closeCode: 4001, message: "token expired" },
  token_not_yet_valid: { closeCode: 4001, message: "token not yet valid" },
  lifetime_too_long: { closeCode: 4001, message: "token lifetime too long" },
  audience_mismatch: { closeCode: 4001, message: "token audience not accepted" },
  scope_mismatch: { closeCode: 4003, message: "token not valid for this agent" },
  algorithm_not_allowed: { closeCode: 4001, message: "token algorithm not allowed" },
  unknown_key: { closeCode: 4001, message: "token signing key unknown" },
  token_replayed: { closeCode: 4001, message: "token already used" },
  token_revoked: { closeCode: 4009, message: "token revoked" },
  origin_not_allowed: { closeCode: 4003, message: "origin not allowed" },
  too_many_attempts: { closeCode: 4008, message: "too many failed attempts" },
  token_ambiguous: { closeCode: 4001, message: "token sent in more than one place" },
  subject_mismatch: { closeCode: 4003, message: "token is for another subject" },
  not_found: { closeCode: 4004, status: 404, message: "not found" },
  unknown_agent: { closeCode: 4004, status: 404, message: "unknown agent" },
  bad_instance_name: { closeCode: 4003, status: 400, message: "bad instance name" },
  url_too_long: { closeCode: 4003, status: 414, message: "URL too long" },
  bad_handshake: { closeCode: 4003, status: 400, message: "bad WebSocket handshake" },
  shutting_down: { closeCode: 1001, status: 503, message: "server shutting down" },
  too_many_connections: { closeCode: 1013, status: 503, message: "too many connections" },
  too_many_instances: { closeCode: 1013, status: 503, message: "too many live instances" },
  agent_failed_to_start: { closeCode: 1011, status: 500, message: "agent failed to start" },
  internal_error: { closeCode: 1011, status: 500, message: "internal error" },
};

const STATUS: Record<number, AuthStatus> = { 4001: 401, 4003: 403, 4008: 429, 4009: 401 };

/** Options of an `AuthError`. */
export interface AuthErrorOptions {
  /** How long the client should wait before trying again (with `too_many_attempts`). */
  retryAfterMs?: number;
  /** Fingerprint of the refused token (see `fingerprint()`), for the log. */
  fingerprint?: string;
  /** Not the client's fault (e.g. the identity provider's keys could not be fetched). */
  transient?: boolean;
}

/**
 * A refusal. Its `message` is short and safe to send to the client: it never holds the
 * token or anything about the server's keys.
 *
 * @example
 * try {
 *   await verifyToken(keys, token, { agent: "counter", name: "room-1" });
 * } catch (error) {
 *   if (error instanceof AuthError) ws.close(error.closeCode, error.message);
 * }
 */
export class AuthError extends Error {
  override readonly name = "AuthError";
  /** Stable reason, e.g. `token_expired`. */
  readonly code: AuthErrorCode;
  /** WebSocket close code for this reason. */
  readonly closeCode: AuthCloseCode;
  /** HTTP status for this reason. */
  readonly status: AuthStatus;
  /** Milliseconds the client should wait before trying again. */
  readonly retryAfterMs?: number;
  /** Fingerprint of the token that was refused, when there was one. */
  fingerprint?: string;
  /** True when the refusal is not the client's fault; it does not count as a failed attempt. */
  readonly transient: boolean;

  constructor(code: AuthErrorCode, message?: string, options: AuthErrorOptions = {}) {
    const reason = REASONS[code];
    super(message ?? reason.message);
    this.code = code;
    this.closeCode = reason.closeCode;
    this.status = reason.status ?? STATUS[reason.closeCode] ?? 500;
    if (options.retryAfterMs !== undefined) this.retryAfterMs = options.retryAfterMs;
    if (options.fingerprint !== undefined) this.fingerprint = options.fingerprint;
    this.transient = options.transient === true;
  }
}

/** True for an `AuthError`, also one from another copy of this module. */
export function isAuthError(error: unknown): error is AuthError {
  return (
    error instanceof AuthError ||
    (error instanceof Error &&
      error.name === "AuthError" &&
      typeof (error as Partial<AuthError>).code === "string" &&
      typeof (error as Partial<AuthError>).closeCode === "number")
  );
}

/** jose error codes and claims → our reasons. Matched on jose's stable `code`, never its text. */
export function fromJoseError(error: unknown): AuthError {
  if (isAuthError(error)) return error;
  const code = (error as { code?: unknown } | null)?.code;
  const claim = (error as { claim?: unknown } | null)?.claim;
  const reason = (error as { reason?: unknown } | null)?.reason;
  switch (code) {
    case "ERR_JWT_EXPIRED":
      return new AuthError("token_expired");
    case "ERR_JWS_SIGNATURE_VERIFICATION_FAILED":
      return new AuthError("signature_invalid");
    case "ERR_JWKS_NO_MATCHING_KEY":
    case "ERR_JWKS_MULTIPLE_MATCHING_KEYS":
      return new AuthError("unknown_key");
    case "ERR_JWKS_TIMEOUT":
    case "ERR_JWKS_INVALID":
      // The identity provider's keys could not be read: the client can only retry later.
      return new AuthError("unknown_key", "token signing keys unavailable", { transient: true });
    case "ERR_JOSE_ALG_NOT_ALLOWED":
    case "ERR_JOSE_NOT_SUPPORTED":
      return new AuthError("algorithm_not_allowed");
    case "ERR_JWT_CLAIM_VALIDATION_FAILED":
      // A missing or mistyped claim is a malformed token, except the audience and issuer,
      // whose absence means "not for us".
      if (reason !== "check_failed" && claim !== "aud" && claim !== "iss") {
        return new AuthError(
          "token_malformed",
          claim === "exp" ? "token has no valid expiry" : undefined,
        );
      }
      switch (claim) {
        case "nbf":
        case "iat":
          return new AuthError("token_not_yet_valid");
        case "aud":
          return new AuthError("audience_mismatch");
        case "iss":
          return new AuthError("audience_mismatch", "token issuer not accepted");
        default:
          return new AuthError("token_malformed");
      }
    default:
      // ERR_JWS_INVALID, ERR_JWT_INVALID, ERR_JWK_INVALID, and anything unexpected: the token
      // could not be read as one we issue. Never leak the underlying message.
      return new AuthError("token_malformed");
  }
}

/**
 * Any failure while checking `token` as an `AuthError` (jose errors mapped by code), with
 * the token's fingerprint attached so the refusal can be logged without the token.
 */
export function toRefusal(error: unknown, token: string | undefined): AuthError {
  const refusal = isAuthError(error) ? error : fromJoseError(error);
  if (typeof token === "string" && token !== "" && refusal.fingerprint === undefined) {
    refusal.fingerprint = fingerprint(token);
  }
  return refusal;
}

import { CloseCode } from "../protocol/close-codes.js";
import { formatRetryReason, retryAfterSeconds } from "../protocol/retry-hint.js";
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
  /** `aud` is not one this verifier accepts. */
  | "audience_mismatch"
  /** `iss` is not one this verifier accepts. */
  | "issuer_mismatch"
  /** Valid identity, but the token is not for this agent, instance or action. */
  | "scope_mismatch"
  /** The header's `alg` is not the one algorithm of the key (or of the key set). */
  | "algorithm_not_allowed"
  /** No key with the token's `kid` (or no `kid` where several keys could verify). */
  | "unknown_key"
  /** The identity provider's keys could not be fetched (refused, timeout, 5xx, bad JSON). */
  | "keys_unavailable"
  /** A single-use ticket presented a second time. */
  | "token_replayed"
  /** The replay store is full of unexpired ticket ids; a new ticket cannot be spent safely. */
  | "replay_store_full"
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
  /** Cluster mode: the instance's owner cannot be reached, or this node is not serving. */
  | "owner_unavailable"
  /** Anything else that went wrong on the server's side. */
  | "internal_error";

/** WebSocket close code of a refusal; see `src/protocol/close-codes.ts` for what each asks of the client. */
export type AuthCloseCode =
  | typeof CloseCode.GoingAway
  | typeof CloseCode.InternalError
  | typeof CloseCode.TryAgainLater
  | typeof CloseCode.Unauthorized
  | typeof CloseCode.Forbidden
  | typeof CloseCode.UnknownAgent
  | typeof CloseCode.TooManyAttempts
  | typeof CloseCode.Revoked;

/** HTTP status of each refusal, for the reject-with-HTTP mode and plain requests. */
export type AuthStatus = 400 | 401 | 403 | 404 | 414 | 429 | 500 | 503;

/** What the table says about one reason. */
export interface Reason {
  closeCode: AuthCloseCode;
  status: AuthStatus;
  /** Safe to send to the client. */
  message: string;
  /** Not the client's fault: the same credentials may work later. Never counted as a failed attempt. */
  transient: boolean;
  /**
   * Counted against the client address by the failed-attempt limit. Only a credential that
   * failed counts: an origin refusal must not let a foreign page lock its visitors out.
   */
  counted: boolean;
}

const UNAUTHORIZED = { closeCode: CloseCode.Unauthorized, status: 401 } as const;
const FORBIDDEN = { closeCode: CloseCode.Forbidden, status: 403 } as const;
const NOT_FOUND = { closeCode: CloseCode.UnknownAgent, status: 404 } as const;
const TRY_AGAIN = { closeCode: CloseCode.TryAgainLater, status: 503 } as const;
const SERVER_ERROR = { closeCode: CloseCode.InternalError, status: 500 } as const;
const GOING_AWAY = { closeCode: CloseCode.GoingAway, status: 503 } as const;
const credential = (base: typeof UNAUTHORIZED | typeof FORBIDDEN, message: string): Reason => ({
  ...base,
  message,
  transient: false,
  counted: true,
});
const server = (
  base: Pick<Reason, "closeCode" | "status">,
  message: string,
  transient: boolean,
): Reason => ({ ...base, message, transient, counted: false });

/** Every refusal anywhere in Outpost, by code: its close code, HTTP status and whether it is transient. */
export const REASONS: Readonly<Record<AuthErrorCode, Readonly<Reason>>> = {
  token_missing: credential(UNAUTHORIZED, "token missing"),
  token_malformed: credential(UNAUTHORIZED, "token malformed"),
  signature_invalid: credential(UNAUTHORIZED, "token signature invalid"),
  token_expired: credential(UNAUTHORIZED, "token expired"),
  token_not_yet_valid: credential(UNAUTHORIZED, "token not yet valid"),
  lifetime_too_long: credential(UNAUTHORIZED, "token lifetime too long"),
  audience_mismatch: credential(UNAUTHORIZED, "token audience not accepted"),
  issuer_mismatch: credential(UNAUTHORIZED, "token issuer not accepted"),
  scope_mismatch: credential(FORBIDDEN, "token not valid for this agent"),
  algorithm_not_allowed: credential(UNAUTHORIZED, "token algorithm not allowed"),
  unknown_key: credential(UNAUTHORIZED, "token signing key unknown"),
  keys_unavailable: server(TRY_AGAIN, "token signing keys unavailable", true),
  token_replayed: credential(UNAUTHORIZED, "token already used"),
  replay_store_full: server(TRY_AGAIN, "too many tickets in use", true),
  token_revoked: {
    closeCode: CloseCode.Revoked,
    status: 401,
    message: "token revoked",
    transient: false,
    counted: true,
  },
  origin_not_allowed: {
    ...FORBIDDEN,
    message: "origin not allowed",
    transient: false,
    counted: false,
  },
  too_many_attempts: {
    closeCode: CloseCode.TooManyAttempts,
    status: 429,
    message: "too many failed attempts",
    transient: false,
    counted: false,
  },
  token_ambiguous: credential(UNAUTHORIZED, "token sent in more than one place"),
  subject_mismatch: credential(FORBIDDEN, "token is for another subject"),
  not_found: server(NOT_FOUND, "not found", false),
  unknown_agent: server(NOT_FOUND, "unknown agent", false),
  // Answered in the HTTP handshake (there is no socket yet); the close code is for a host
  // that accepts first.
  bad_instance_name: server({ ...FORBIDDEN, status: 400 }, "bad instance name", false),
  url_too_long: server({ ...FORBIDDEN, status: 414 }, "URL too long", false),
  bad_handshake: server({ ...FORBIDDEN, status: 400 }, "bad WebSocket handshake", false),
  too_many_connections: server(TRY_AGAIN, "too many connections", true),
  too_many_instances: server(TRY_AGAIN, "too many live instances", true),
  shutting_down: server(GOING_AWAY, "server shutting down", false),
  agent_failed_to_start: server(SERVER_ERROR, "agent failed to start", false),
  owner_unavailable: server(TRY_AGAIN, "agent unavailable", true),
  internal_error: server(SERVER_ERROR, "internal error", false),
};

/** Options of an `AuthError`. */
export interface AuthErrorOptions {
  /** How long the client should wait before trying again; `reason` then says so. */
  retryAfterMs?: number;
  /** Fingerprint of the refused token (see `fingerprint()`), for the log. */
  fingerprint?: string;
}

/**
 * A refusal, anywhere on the road of a connection. Its `message` is short and safe to send
 * to the client: it never holds the token or anything about the server's keys. `reason`
 * adds the retry hint (`; retry in Ns`) when `retryAfterMs` is set.
 *
 * @example
 * try {
 *   await verifyToken(keys, token, { agent: "counter", name: "room-1" });
 * } catch (error) {
 *   if (error instanceof AuthError) ws.close(error.closeCode, error.reason);
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
  /** The refused token's fingerprint, or how to compute it when first read. */
  #fingerprint: string | (() => string) | undefined;
  /** True when the refusal is not the client's fault (see `REASONS`). */
  readonly transient: boolean;
  /** True when the refusal counts against the client address (see `REASONS`). */
  readonly counted: boolean;

  constructor(code: AuthErrorCode, message?: string, options: AuthErrorOptions = {}) {
    const reason = REASONS[code];
    // A refusal is an answer, not a fault: where it was made says nothing its code does not,
    // and a flood of bad tokens would pay for a stack trace each (about 5 µs).
    const stackTraceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message ?? reason.message);
    Error.stackTraceLimit = stackTraceLimit;
    this.code = code;
    this.closeCode = reason.closeCode;
    this.status = reason.status;
    if (options.retryAfterMs !== undefined) this.retryAfterMs = options.retryAfterMs;
    this.#fingerprint = options.fingerprint;
    this.transient = reason.transient;
    this.counted = reason.counted;
  }

  /** Fingerprint of the token that was refused, when there was one. */
  get fingerprint(): string | undefined {
    if (typeof this.#fingerprint === "function") this.#fingerprint = this.#fingerprint();
    return this.#fingerprint;
  }

  set fingerprint(value: string | undefined) {
    this.#fingerprint = value;
  }

  /**
   * The refused `token`, unless a fingerprint is already known: its fingerprint is computed
   * when first read, since most refusals are counted and never logged.
   */
  presented(token: string): void {
    this.#fingerprint ??= () => fingerprint(token);
  }

  /** The close reason (or HTTP error message): `message`, plus `; retry in Ns` when there is a wait. */
  get reason(): string {
    return this.retryAfterMs === undefined
      ? this.message
      : formatRetryReason(this.message, this.retryAfterMs);
  }

  /** Seconds for a `Retry-After` header, when the refusal has a wait. */
  get retryAfterSeconds(): number | undefined {
    return this.retryAfterMs === undefined ? undefined : retryAfterSeconds(this.retryAfterMs);
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
      return new AuthError("keys_unavailable");
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
          return new AuthError("issuer_mismatch");
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
  if (typeof token === "string" && token !== "") {
    // An AuthError of another copy of Outpost may predate `presented`.
    if (typeof refusal.presented === "function") refusal.presented(token);
    else refusal.fingerprint ??= fingerprint(token);
  }
  return refusal;
}

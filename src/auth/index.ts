export {
  type AuthCloseCode,
  AuthError,
  type AuthErrorCode,
  type AuthErrorOptions,
  type AuthStatus,
  isAuthError,
  REASONS,
  type Reason,
} from "./errors.js";
export { fingerprint } from "./fingerprint.js";
export {
  type AsymmetricAlgorithm,
  createKeySet,
  type JsonWebKeySet,
  type KeySet,
  type KeySetOptions,
  loadKeySet,
  type ResolvedKey,
  type RotateOptions,
  type SigningAlgorithm,
  type SigningKey,
  saveKeySet,
  type VerificationKeys,
} from "./keys.js";
export type {
  AuthAction,
  AuthClaims,
  AuthPolicy,
  AuthRequest,
  AuthSession,
  HeaderReader,
} from "./policy.js";
export type { RateLimitOptions } from "./rate-limit.js";
export { type RemoteKeySetOptions, remoteKeySet } from "./remote-keys.js";
export { MemoryReplayStore, type MemoryReplayStoreOptions, type ReplayStore } from "./replay.js";
export { FULL_SCOPE, matchesTarget } from "./scope.js";
export {
  type SessionCookie,
  type SessionCookieClaims,
  type SessionCookieOptions,
  sessionCookie,
} from "./session-cookie.js";
export type { AuthStateStore, RevocationEntry } from "./state-store.js";
export { type TokenAuthOptions, tokenAuth } from "./token-auth.js";
export {
  type IssueTokenOptions,
  issueToken,
  MAX_TOKEN_LENGTH,
  type VerifyTokenOptions,
  verifyJWT,
  verifyToken,
} from "./tokens.js";
export { BEARER_PROTOCOL_PREFIX, OUTPOST_PROTOCOL, type Transport } from "./transports.js";

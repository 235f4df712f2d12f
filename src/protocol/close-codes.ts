/**
 * WebSocket close codes Outpost uses. The 4xxx codes are the only signal a browser can
 * read from a refused connection, so each one tells the client what to do next.
 */
export const CloseCode = {
  /** Server shutting down or agent going away: reconnect with backoff. */
  GoingAway: 1001,
  /** Protocol violation (e.g. binary frame where JSON is required): reconnect with backoff. */
  PolicyViolation: 1008,
  /** Frame larger than the configured limit. */
  MessageTooBig: 1009,
  /** Server error; never carries a stack trace. */
  InternalError: 1011,
  /** Server overloaded (too many connections, slow reader): reconnect with backoff. */
  TryAgainLater: 1013,
  /** Token missing, malformed, bad signature, expired, replayed: fetch fresh credentials. */
  Unauthorized: 4001,
  /** Valid identity, but not for this agent/instance, or origin refused: stop. */
  Forbidden: 4003,
  /**
   * No agent by that name on this server (the reason lists the ones it has), or no such
   * path, for a refusal sent as a close: stop. A browser only sees 1006 for an HTTP 404 on
   * the upgrade; this code says "wrong address".
   */
  UnknownAgent: 4004,
  /** Too many failed attempts from this client address: wait the time in the reason. */
  TooManyAttempts: 4008,
  /** Session revoked by the server: stop. */
  Revoked: 4009,
} as const;

export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/**
 * Errors the client hands to callers. Each has a stable `code` to match on, never the text.
 */

/** Why a connection ended for good. */
export type ConnectionErrorCode =
  /** Closed 4001 again after fresh credentials were fetched the allowed number of times. */
  | "unauthorized"
  /** Closed 4003: the identity is valid but may not open this agent or instance. */
  | "forbidden"
  /** Closed 4009: the server revoked the session. */
  | "revoked"
  /** Closed with another application code (4000–4999) the client does not retry. */
  | "refused"
  /**
   * The server has no such agent: it closed 4004 (its reason names the agents it has) or
   * answered the upgrade with HTTP 404. Retrying cannot help: the name is wrong.
   */
  | "not_found"
  /**
   * Nothing listens at the host and port (connection refused, or the host name does not
   * resolve). Only where the WebSocket class says so (e.g. `ws` in Node; a browser reports
   * every failed handshake alike). Final when the client has never reached the server;
   * afterwards it is shown in `status.error` while the client keeps retrying.
   */
  | "unreachable"
  /** The `query` function kept failing, so no connection could be attempted. */
  | "query_failed"
  /** `maxRetries` consecutive attempts failed. */
  | "retries_exhausted"
  /** The options cannot produce a URL (e.g. no `host` outside a browser). */
  | "invalid_options"
  /** `close()` was called (used for `ready` and pending calls, never as `connectionError`). */
  | "closed";

/** Why a connection failed; see `code`. As `connectionError`, it will not be retried. */
export class AgentConnectionError extends Error {
  override readonly name = "AgentConnectionError";
  /** Stable reason, e.g. `forbidden`. */
  readonly code: ConnectionErrorCode;
  /** WebSocket close code of the last close, when there was one. */
  readonly closeCode: number | undefined;
  /** Close reason the server gave, when there was one. */
  readonly reason: string;

  constructor(
    code: ConnectionErrorCode,
    message: string,
    close?: { code: number; reason: string },
  ) {
    super(message);
    this.code = code;
    this.closeCode = close?.code;
    this.reason = close?.reason ?? "";
  }
}

/** Why an RPC call did not produce a result. */
export type CallErrorCode =
  /** The agent's method threw; `message` is the error the server sent. */
  | "remote_error"
  /** No answer within the call's `timeout`. */
  | "timeout"
  /**
   * The connection dropped after the call was sent and before its answer arrived: the
   * method may or may not have run, so the call is not replayed.
   */
  | "connection_lost"
  /** `close()` was called, or the connection ended for good, before the call finished. */
  | "closed"
  /** Too many messages already waiting for the connection to open. */
  | "queue_full";

/** An RPC call that failed; see `code`. */
export class AgentCallError extends Error {
  override readonly name = "AgentCallError";
  /** Stable reason, e.g. `timeout`. */
  readonly code: CallErrorCode;
  /** The method that was called. */
  readonly method: string;

  constructor(code: CallErrorCode, method: string, message: string) {
    super(message);
    this.code = code;
    this.method = method;
  }
}

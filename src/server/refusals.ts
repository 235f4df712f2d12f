import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import type { WebSocketServer } from "ws";
import { truncateReason } from "../agent/connection.js";
import type { RefusalContext } from "../agent/connection-auth.js";
import type { AuthError } from "../auth/errors.js";
import { acceptUpgrade, json, rejectUpgrade } from "./http.js";
import { redactUrl } from "./logger.js";

/**
 * Refusals an upgrade answers with plain HTTP: the request is not a handshake we can
 * complete (or must not complete), so there is no socket to carry a close code.
 */
const BEFORE_HANDSHAKE = new Set<string>([
  "url_too_long",
  "bad_handshake",
  "bad_instance_name",
  "not_found",
]);

function retryHeaders(refusal: AuthError): Record<string, string> {
  const seconds = refusal.retryAfterSeconds;
  return seconds === undefined ? {} : { "retry-after": String(seconds) };
}

/**
 * Every refusal, on every path, is counted here and logged here: one counter per reason
 * code and one structured line (never the token; the URL redacted).
 */
export class Refusals {
  readonly #counts: Record<string, number> = {};
  readonly #logger: Logger;
  /** Query parameters the auth policy reads credentials from, redacted in every URL logged. */
  readonly #credentialParams: () => readonly string[];

  constructor(logger: Logger, credentialParams: () => readonly string[] = () => []) {
    this.#logger = logger;
    this.#credentialParams = credentialParams;
  }

  get counts(): Record<string, number> {
    return { ...this.#counts };
  }

  readonly record = (refusal: AuthError, context: RefusalContext): void => {
    this.#counts[refusal.code] = (this.#counts[refusal.code] ?? 0) + 1;
    // A path nobody serves is not an auth event; the admission logs each unknown agent once.
    const level =
      refusal.code === "not_found" || refusal.code === "unknown_agent" ? "debug" : "warn";
    // With logging off (or above warn), a refusal costs its counter and nothing else.
    if (!this.#logger.isLevelEnabled(level)) return;
    this.#logger[level](
      {
        event: "auth_refused",
        code: refusal.code,
        closeCode: refusal.closeCode,
        agent: context.agent,
        instance: context.name,
        ip: context.remoteAddress,
        origin: context.origin ?? undefined,
        fingerprint: refusal.fingerprint,
        url: redactUrl(context.url, this.#credentialParams()),
      },
      "refused",
    );
  };

  /** The HTTP answer to a refused request. */
  response(refusal: AuthError, extraHeaders: Record<string, string> = {}): Response {
    return json(
      refusal.status,
      { error: refusal.code, message: refusal.reason },
      { ...retryHeaders(refusal), ...extraHeaders },
    );
  }

  /**
   * Answer a refused upgrade. By default the socket is accepted and closed at once with the
   * refusal's close code, because a browser can read a 4xxx close but sees a refused
   * handshake as a network failure (1006); nothing else is ever sent on it.
   */
  upgrade(
    refusal: AuthError,
    wss: WebSocketServer,
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    rejectWithHttp: boolean,
  ): void {
    if (socket.destroyed) return;
    if (rejectWithHttp || BEFORE_HANDSHAKE.has(refusal.code)) {
      rejectUpgrade(socket, refusal.status, refusal.reason, retryHeaders(refusal));
      return;
    }
    // The 101 answer and the close frame in one write.
    acceptUpgrade(wss, req, socket, head, (ws) => {
      ws.on("error", () => {});
      ws.close(refusal.closeCode, truncateReason(refusal.reason));
      // A client that never answers the close must not hold the socket.
      setTimeout(() => ws.terminate(), 2000).unref();
    });
  }
}

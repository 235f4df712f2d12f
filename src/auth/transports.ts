import { BEARER_PROTOCOL_PREFIX, OUTPOST_PROTOCOL } from "../protocol/subprotocols.js";
import { AuthError } from "./errors.js";
import { fingerprint } from "./fingerprint.js";
import type { AuthRequest, HeaderReader } from "./policy.js";

/**
 * Where a token may travel: the URL query (`?token=`), the `Sec-WebSocket-Protocol`
 * header (`outpost.bearer.<jwt>`), an `Authorization: Bearer` header (non-browser clients),
 * or a session cookie.
 */
export type Transport = "query" | "protocol" | "header" | "cookie";

/** All transports, in the order they are looked at. */
export const TRANSPORTS: readonly Transport[] = ["query", "protocol", "header", "cookie"];

export { BEARER_PROTOCOL_PREFIX, OUTPOST_PROTOCOL };

/** A token found in a request. */
export interface FoundToken {
  token: string;
  transport: Transport;
  /** Subprotocol to select in the handshake, when the token came as one. */
  protocol?: string;
}

/** Where to look; see `findToken`. */
export interface FindTokenOptions {
  /** Query parameter name (default `token`). */
  param: string;
  transports: ReadonlySet<Transport>;
  /** The session cookie's reader, when cookies are accepted (see `SessionCookie.read`). */
  cookie?: { read(headers: HeaderReader): string | undefined };
}

/**
 * The one token a request carries. A token in the query, the subprotocol and the
 * Authorization header are equal choices, so two of them at once (or one twice) is refused
 * as `token_ambiguous`: a proxy, a log and the verifier must never disagree about which
 * token was used. The cookie, which the browser sends on its own, is only read when no
 * explicit token is present.
 */
export function findToken(request: AuthRequest, options: FindTokenOptions): FoundToken | undefined {
  const found: FoundToken[] = [];
  const { transports } = options;
  if (transports.has("query")) {
    for (const token of request.url.searchParams.getAll(options.param)) {
      if (token !== "") found.push({ token, transport: "query" });
    }
  }
  const protocols = transports.has("protocol")
    ? request.headers.get("sec-websocket-protocol")
    : null;
  if (protocols !== null) {
    const offered = protocols.split(",").map((p) => p.trim());
    const protocol = offered.includes(OUTPOST_PROTOCOL) ? OUTPOST_PROTOCOL : undefined;
    for (const p of offered) {
      if (p.startsWith(BEARER_PROTOCOL_PREFIX) && p.length > BEARER_PROTOCOL_PREFIX.length) {
        const token = p.slice(BEARER_PROTOCOL_PREFIX.length);
        if (protocol === undefined) {
          // The server must select an offered protocol; without `outpost` it would have to
          // echo the token back in the response headers.
          throw new AuthError("token_malformed", 'offer the "outpost" subprotocol with the token', {
            fingerprint: fingerprint(token),
          });
        }
        found.push({ token, transport: "protocol", protocol });
      }
    }
  }
  if (transports.has("header")) {
    const authorization = request.headers.get("authorization");
    if (authorization !== null) {
      const match = /^Bearer +([^\s,]+) *$/i.exec(authorization);
      if (match?.[1] !== undefined) {
        found.push({ token: match[1], transport: "header" });
      } else if (/^Bearer\b/i.test(authorization)) {
        // Several Authorization headers arrive joined with commas; never guess which one counts.
        throw new AuthError("token_ambiguous", undefined, {
          fingerprint: fingerprint(authorization),
        });
      }
    }
  }
  if (found.length > 1) {
    throw new AuthError("token_ambiguous", undefined, {
      fingerprint: fingerprint(found[0]?.token ?? ""),
    });
  }
  if (found.length === 1) return found[0];
  if (options.cookie !== undefined && transports.has("cookie")) {
    const token = options.cookie.read(request.headers);
    if (token !== undefined) return { token, transport: "cookie" };
  }
  return undefined;
}

/** Every value of cookie `name` in the request's `Cookie` header(s). */
export function readCookie(headers: HeaderReader, name: string): string[] {
  const header = headers.get("cookie");
  if (header === null) return [];
  const values: string[] = [];
  for (const part of header.split(/[;,]/)) {
    const eq = part.indexOf("=");
    if (eq === -1 || part.slice(0, eq).trim() !== name) continue;
    let value = part.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"'))
      value = value.slice(1, -1);
    values.push(value);
  }
  return values;
}

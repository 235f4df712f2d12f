/**
 * What a failed WebSocket handshake tells, where the WebSocket class tells anything.
 *
 * A browser reports every failed handshake as the same bare `error` and close 1006. Node's
 * `ws` (and undici's `WebSocket`) carry the cause: the socket error's `code` when nothing
 * listens, "Unexpected server response: 404" when the server answered the upgrade with a
 * status. partysocket turns every error into a close 1000 with no reason, so the client
 * reads the error first and decides from it what that close means.
 */

/** A handshake that failed in a way retrying with the same address cannot change quickly. */
export type HandshakeFailure =
  /** Nothing accepted the TCP connection, or the host name does not resolve. */
  | { readonly kind: "unreachable"; readonly cause: "connection refused" | "host not found" }
  /** The server answered the upgrade with an HTTP status instead of switching protocols. */
  | { readonly kind: "http"; readonly status: number };

const UNREACHABLE: Record<string, "connection refused" | "host not found"> = {
  ECONNREFUSED: "connection refused",
  ENOTFOUND: "host not found",
};

/** Read a WebSocket `error` event; `undefined` when it says nothing useful. */
export function readHandshakeFailure(event: unknown): HandshakeFailure | undefined {
  const error = (event as { error?: unknown } | null)?.error as
    | { code?: unknown; message?: unknown; cause?: { code?: unknown } }
    | undefined;
  for (const code of [error?.code, error?.cause?.code]) {
    const cause = typeof code === "string" ? UNREACHABLE[code] : undefined;
    if (cause !== undefined) return { kind: "unreachable", cause };
  }
  const message = String(error?.message ?? (event as { message?: unknown } | null)?.message ?? "");
  const status = /Unexpected server response: (\d{3})/.exec(message);
  if (status) return { kind: "http", status: Number(status[1]) };
  return undefined;
}

/** `host:port` of a WebSocket URL, the port spelled out even when it is the default. */
export function hostAndPort(url: string): string {
  const parsed = new URL(url);
  const port = parsed.port || (parsed.protocol === "wss:" ? "443" : "80");
  return `${parsed.hostname}:${port}`;
}

type AnySocket = { addEventListener?: (type: string, listener: (event: unknown) => void) => void };
type SocketClass = new (url: string, protocols?: string | string[]) => object;

/**
 * A WebSocket class that hands each socket's `error` event to `onError` before anyone
 * else hears it (its listener is the first one added). `base` is resolved per socket, so
 * a global `WebSocket` defined later is still found.
 */
export function observeErrors(
  base: () => SocketClass | undefined,
  onError: (event: unknown) => void,
): SocketClass {
  return function observedWebSocket(url: string, protocols?: string | string[]) {
    const Base = base();
    if (Base === undefined) throw new TypeError("no WebSocket class");
    const socket = (protocols ? new Base(url, protocols) : new Base(url)) as AnySocket;
    socket.addEventListener?.("error", onError);
    return socket;
  } as unknown as SocketClass;
}

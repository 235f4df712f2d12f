import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { WebSocket, WebSocketServer } from "ws";

/** Headers of a Node request as a standard `Headers` object. */
export function toHeaders(raw: IncomingMessage["headers"]): Headers {
  const headers = new Headers();
  for (const [key, value] of Object.entries(raw)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const item of value) headers.append(key, item);
    else headers.set(key, value);
  }
  return headers;
}

/**
 * `get()` straight over a Node request's header object: what the auth layer reads on
 * every upgrade, without copying every header into a WHATWG `Headers` first.
 */
export function headerReader(raw: IncomingMessage["headers"]): {
  get(name: string): string | null;
} {
  return {
    get(name) {
      const value = raw[name.toLowerCase()];
      if (value === undefined) return null;
      return Array.isArray(value) ? value.join(", ") : value;
    },
  };
}

/** Thrown when a request body is larger than allowed. */
export class BodyTooLargeError extends Error {}

/** A Node request as a standard `Request`, reading at most `maxBodyBytes` of body. */
export async function toRequest(
  req: IncomingMessage,
  url: URL,
  maxBodyBytes: number,
): Promise<Request> {
  const method = req.method ?? "GET";
  const headers = toHeaders(req.headers);
  if (method === "GET" || method === "HEAD") return new Request(url, { method, headers });
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBodyBytes) throw new BodyTooLargeError();
    chunks.push(chunk as Buffer);
  }
  return new Request(url, { method, headers, body: Buffer.concat(chunks) });
}

/** Write a standard `Response` to a Node response. */
export async function writeResponse(res: ServerResponse, response: Response): Promise<void> {
  const headers: Record<string, string | string[]> = {};
  response.headers.forEach((value, key) => {
    if (key === "set-cookie") return;
    headers[key] = value;
  });
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) headers["set-cookie"] = cookies;
  if (response.statusText !== "") res.statusMessage = response.statusText;
  res.writeHead(response.status, headers);
  if (response.body === null) {
    res.end();
    return;
  }
  const body = Buffer.from(await response.arrayBuffer());
  res.end(body);
}

const STATUS_TEXT: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  413: "Payload Too Large",
  414: "URI Too Long",
  429: "Too Many Requests",
  503: "Service Unavailable",
};

/** Answer an upgrade request with a plain HTTP error and drop the socket. */
export function rejectUpgrade(
  socket: Duplex,
  status: number,
  body = "",
  extraHeaders: Record<string, string> = {},
): void {
  if (socket.destroyed) return;
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? "Error"}`,
    "Connection: close",
    "Content-Type: text/plain; charset=utf-8",
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...Object.entries(extraHeaders).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.end(`${lines.join("\r\n")}\r\n\r\n${body}`);
  setTimeout(() => socket.destroy(), 1000).unref();
}

/**
 * Complete a WebSocket handshake with the socket corked until `onSocket` returns: the 101
 * answer and whatever `onSocket` sends at once (the connect frames, or a refusal's close)
 * leave in one write, one system call and one TCP segment.
 */
export function acceptUpgrade(
  wss: WebSocketServer,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  onSocket: (ws: WebSocket) => void,
): void {
  socket.cork();
  try {
    wss.handleUpgrade(req, socket, head, onSocket);
  } finally {
    socket.uncork();
  }
}

/** A JSON response. */
export function json(
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
  });
}

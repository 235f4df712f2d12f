import { readFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { extname, join, normalize, sep } from "node:path";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".map": "application/json; charset=utf-8",
};

/**
 * Send a file of the built app. Both servers serve the same Vite build (the agent server
 * only its own page), so this is shared. Paths that leave `root` are refused.
 */
export async function sendFile(
  res: ServerResponse,
  root: string,
  relativePath: string,
  transform?: (text: string) => string,
): Promise<boolean> {
  const path = normalize(join(root, relativePath));
  if (!path.startsWith(root + sep)) return false;
  let body: Buffer;
  try {
    body = await readFile(path);
  } catch {
    return false;
  }
  const type = TYPES[extname(path)] ?? "application/octet-stream";
  const payload = transform ? Buffer.from(transform(body.toString("utf8"))) : body;
  res.writeHead(200, {
    "content-type": type,
    // Vite fingerprints asset names, so they may be cached; pages must not be.
    "cache-control": relativePath.startsWith("assets/")
      ? "public, max-age=31536000, immutable"
      : "no-store",
    "x-content-type-options": "nosniff",
  });
  res.end(payload);
  return true;
}

/** A JSON answer. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string | string[]> = {},
): void {
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "cache-control": "no-store",
    ...headers,
  });
  res.end(JSON.stringify(body));
}

/** A redirect. */
export function redirect(
  res: ServerResponse,
  location: string,
  headers: Record<string, string | string[]> = {},
): void {
  res.writeHead(302, { location, "cache-control": "no-store", ...headers });
  res.end();
}

/** Read a small JSON body; anything else (too big, not JSON, wrong type) is `undefined`. */
export async function readJson(req: IncomingMessage, limit = 4096): Promise<unknown> {
  // A JSON content type forces a CORS preflight, so another site cannot post a login form.
  if (!req.headers["content-type"]?.startsWith("application/json")) return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) return undefined;
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    return undefined;
  }
}

/** The value of one cookie from a request. */
export function readCookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const index = part.indexOf("=");
    if (index > 0 && part.slice(0, index).trim() === name) return part.slice(index + 1).trim();
  }
  return undefined;
}

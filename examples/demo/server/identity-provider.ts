import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createKeySet, issueToken, verifyToken } from "outpost/auth";
import { readCookie, readJson, redirect, sendFile, sendJson } from "./http-utils.js";

/** What the identity provider needs to know about the rest of the demo. */
export interface IdentityProviderOptions {
  /** Origin of this server, e.g. `http://127.0.0.1:5173`. */
  appOrigin: string;
  /** Origin of the agent server, e.g. `http://localhost:8787`. */
  agentOrigin: string;
  /** Lifetime of the JWT-refresh panel's tokens, in seconds. */
  refreshTtl: number;
  /** Lifetime of the other tokens, in seconds. */
  tokenTtl: number;
  /** The Vite build of the page. */
  distDir: string;
}

const LOGIN_COOKIE = "demo_login";
const USER_NAME = /^[A-Za-z0-9_.-]{1,24}$/;
const AGENT = "room";
/** The agent server's session page trades this one-minute token for its own cookie. */
const HANDOFF_TTL = 60;

/**
 * The app's own server: it serves the React page and is the identity provider. A user
 * signs in with a name (this is a demo: there are no passwords); the page then asks for
 * short-lived EdDSA tokens for the chat room, and the agent server checks them against
 * the public keys published at `/.well-known/jwks.json`.
 */
export async function createIdentityProvider(options: IdentityProviderOptions) {
  const keys = await createKeySet({ algorithm: "EdDSA" });
  // Sign-ins live in memory: a restart signs everybody out, which is fine for a demo.
  const logins = new Map<string, string>();
  const callbackUrl = `${options.agentOrigin}/session/callback`;

  const userOf = (req: IncomingMessage): string | undefined => {
    const id = readCookie(req, LOGIN_COOKIE);
    return id === undefined ? undefined : logins.get(id);
  };

  const tokenFor = (user: string, name: string, ttl: number) =>
    issueToken(keys, { sub: user, agent: AGENT, name, scope: ["connect", "rpc"], ttl });

  /** Answers one request; everything the app needs is here. */
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", options.appOrigin);
    const route = `${req.method} ${url.pathname}`;
    switch (route) {
      case "GET /.well-known/jwks.json":
        return sendJson(res, 200, await keys.jwks(), { "cache-control": "public, max-age=60" });

      case "POST /api/login": {
        const body = (await readJson(req)) as { user?: unknown } | undefined;
        const user = typeof body?.user === "string" ? body.user.trim() : "";
        if (!USER_NAME.test(user)) {
          return sendJson(res, 400, { error: "pick a name of letters, digits, . _ or -" });
        }
        const id = randomUUID();
        logins.set(id, user);
        return sendJson(
          res,
          200,
          { user },
          { "set-cookie": `${LOGIN_COOKIE}=${id}; Path=/; HttpOnly; SameSite=Lax` },
        );
      }

      case "POST /api/logout": {
        const id = readCookie(req, LOGIN_COOKIE);
        if (id !== undefined) logins.delete(id);
        return sendJson(
          res,
          200,
          {},
          { "set-cookie": `${LOGIN_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0` },
        );
      }

      case "GET /api/session": {
        const user = userOf(req);
        return sendJson(res, 200, { user: user === undefined ? null : { id: user, name: user } });
      }
      case "GET /api/me": {
        const user = userOf(req);
        return user === undefined
          ? sendJson(res, 401, { error: "not signed in" })
          : sendJson(res, 200, { id: user, name: user });
      }

      case "GET /api/chat-token": {
        // The chat panel's token: the user's own chat instance, to connect and chat (chat frames
        // are messages to the agent), and nothing else.
        const user = userOf(req);
        if (user === undefined) return sendJson(res, 401, { error: "not signed in" });
        const token = await issueToken(keys, {
          sub: user,
          agent: "demo-chat",
          name: user,
          scope: ["connect", "message"],
          ttl: options.tokenTtl,
        });
        return sendJson(res, 200, { token, name: user });
      }

      case "GET /api/token": {
        // The token endpoint the page's `getAuthToken()` calls, same-origin with the cookie.
        const user = userOf(req);
        if (user === undefined) return sendJson(res, 401, { error: "not signed in" });
        const name = url.searchParams.get("name") ?? "lobby";
        const ttl =
          url.searchParams.get("kind") === "refresh" ? options.refreshTtl : options.tokenTtl;
        const token = await tokenFor(user, name, ttl);
        return sendJson(res, 200, { token, userId: user });
      }

      case "GET /api/users/me": {
        // The seed page's `validateToken()`: is this bearer token still good, and until when?
        const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
        if (bearer === undefined) return sendJson(res, 401, { error: "token missing" });
        try {
          const claims = await verifyToken(keys, bearer, { agent: AGENT, name: "lobby" });
          return sendJson(res, 200, { id: claims.sub, exp: claims.exp, iat: claims.iat });
        } catch (error) {
          return sendJson(res, 401, { error: (error as { code?: string }).code ?? "invalid" });
        }
      }

      case "GET /authorize": {
        // The agent server's own page signs in through here: a one-minute token handed back
        // to the agent server's callback, which swaps it for a session cookie of its own.
        if (url.searchParams.get("redirect_uri") !== callbackUrl) {
          return sendJson(res, 400, { error: "unknown redirect_uri" });
        }
        const user = userOf(req);
        if (user === undefined) return redirect(res, `/?next=${encodeURIComponent(url.href)}`);
        const token = await tokenFor(user, "*", HANDOFF_TTL);
        return redirect(res, `${callbackUrl}?token=${encodeURIComponent(token)}`);
      }

      case "GET /":
      case "GET /index.html":
        // The page learns where the agents live from a meta tag, so one build serves any port.
        if (
          await sendFile(res, options.distDir, "index.html", (html) =>
            html
              .replaceAll("__AGENT_ORIGIN__", options.agentOrigin)
              .replaceAll("__REFRESH_TTL__", String(options.refreshTtl)),
          )
        ) {
          return;
        }
        return sendJson(res, 503, { error: "the app is not built: run npm start" });
    }
    if (req.method === "GET" && url.pathname.startsWith("/assets/")) {
      if (await sendFile(res, options.distDir, url.pathname.slice(1))) return;
    }
    sendJson(res, 404, { error: "not found" });
  }

  return { handle, keys };
}

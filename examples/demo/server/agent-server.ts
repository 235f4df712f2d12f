import { randomBytes } from "node:crypto";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { type AgentServerOptions, createAgentServer } from "outpost";
import { remoteKeySet, sessionCookie, tokenAuth, verifyToken } from "outpost/auth";
import { DemoChat } from "./chat.js";
import { readCookie, redirect, sendFile, sendJson } from "./http-utils.js";
import { Room } from "./room.js";

/** Where the agent server listens and whom it trusts. */
export interface AgentServerSetup {
  /** The `node:http` server to attach to (already listening). */
  server: Server;
  /** Origin of this server, e.g. `http://localhost:8787`. */
  agentOrigin: string;
  /** Origin of the app, whose JWKS signs every token, e.g. `http://127.0.0.1:5173`. */
  appOrigin: string;
  dataDir: string;
  /** The Vite build, for the agent server's own page. */
  distDir: string;
  /**
   * Run as one node of a cluster (`npm run cluster`). Every node then needs the same
   * `cookieSecret`, so a cookie one node issued is good on the others.
   */
  cluster?: AgentServerOptions["cluster"];
  /** The cookie session's signing secret; default a fresh one per start. */
  cookieSecret?: Uint8Array;
}

/**
 * The Outpost agent server: hosts the chat room, trusts tokens signed by the app's
 * identity provider (fetched from its JWKS URL, as a real deployment trusts its IdP), and
 * serves one page of its own that uses a same-origin cookie session instead of a token.
 */
export function createDemoAgentServer(setup: AgentServerSetup) {
  const keys = remoteKeySet(`${setup.appOrigin}/.well-known/jwks.json`, {
    algorithms: ["EdDSA"],
  });
  // A fresh secret per start: restarting the demo signs out the cookie page, nothing more.
  const cookie = sessionCookie({
    secret: setup.cookieSecret ?? randomBytes(32),
    // The demo runs on plain http://localhost; in production keep the default (Secure).
    secure: false,
  });
  const auth = tokenAuth({
    keys,
    cookie,
    // Only the app and this server's own page may open sockets from a browser; a page on
    // any other origin is refused 4003 even when the browser would send our cookie.
    allowedOrigins: [setup.appOrigin, setup.agentOrigin],
  });
  const outpost = createAgentServer({
    agents: { Room, DemoChat },
    server: setup.server,
    dataDir: setup.dataDir,
    auth,
    logger: { level: process.env.OUTPOST_LOG_LEVEL ?? "info", pretty: true },
    // In a cluster the nodes sit behind nginx, which appends the client's address.
    ...(setup.cluster !== undefined && { cluster: setup.cluster, trustProxy: true }),
  });

  /** Plain HTTP: Outpost's own routes first, then the cookie page and its sign-in. */
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (await outpost.handleRequest(req, res)) return;
    const url = new URL(req.url ?? "/", setup.agentOrigin);
    const route = `${req.method} ${url.pathname}`;
    switch (route) {
      case "GET /":
        if (await sendFile(res, setup.distDir, "agent-page.html")) return;
        return sendJson(res, 503, { error: "the app is not built: run npm start" });

      case "GET /session/start": {
        const back = `${setup.agentOrigin}/session/callback`;
        return redirect(
          res,
          `${setup.appOrigin}/authorize?redirect_uri=${encodeURIComponent(back)}`,
        );
      }

      case "GET /session/callback": {
        // The identity provider sends the user back with a one-minute token; verify it with
        // the same keys as every socket, then keep the user in an HTTP-only cookie.
        const token = url.searchParams.get("token") ?? "";
        try {
          const claims = await verifyToken(keys, token, { agent: "room", name: "lobby" });
          const setCookie = await cookie.issue({
            sub: claims.sub,
            agent: "room",
            name: "*",
            scope: ["connect", "rpc"],
          });
          return redirect(res, "/", { "set-cookie": setCookie });
        } catch (error) {
          return sendJson(res, 401, { error: (error as { code?: string }).code ?? "invalid" });
        }
      }

      case "GET /session/me": {
        // Lets the page show "sign in" instead of knocking on the socket without a cookie.
        const value = readCookie(req, cookie.name);
        if (value === undefined) return sendJson(res, 401, { error: "token_missing" });
        try {
          const claims = await verifyToken(await cookie.keys(), value, {
            agent: "room",
            name: "lobby",
            audience: cookie.audience,
            issuer: cookie.issuer,
            maxLifetime: cookie.ttl,
          });
          return sendJson(res, 200, { id: claims.sub });
        } catch (error) {
          return sendJson(res, 401, { error: (error as { code?: string }).code ?? "invalid" });
        }
      }

      case "POST /session/logout":
        return sendJson(res, 200, {}, { "set-cookie": cookie.clear() });
    }
    if (req.method === "GET" && url.pathname.startsWith("/assets/")) {
      if (await sendFile(res, setup.distDir, url.pathname.slice(1))) return;
    }
    sendJson(res, 404, { error: "not found" });
  }

  return { handle, outpost };
}

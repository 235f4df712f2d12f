import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import { AuthError } from "../auth/errors.js";
import type { AuthPolicy } from "../auth/policy.js";
import type { Admission, Admitted } from "./admission.js";
import { clientAddress } from "./client-address.js";
import type { CustomRoutes } from "./custom-routes.js";
import { BodyTooLargeError, headerReader, json, toRequest, writeResponse } from "./http.js";
import type { Refusals } from "./refusals.js";
import type { RemoteBridge } from "./remote.js";
import type { Route } from "./router.js";

/** What the HTTP adapter needs from the server. */
export interface HttpContext {
  admission: Admission;
  refusals: Refusals;
  logger: Logger;
  prefix: string;
  maxBodyBytes: number;
  maxUrlLength: number;
  trustProxy: boolean;
  auth: () => Promise<AuthPolicy | undefined>;
  health: () => Response;
  /** Cluster mode: relays requests for instances other nodes own. */
  remote?: RemoteBridge;
  /** The server's own `route` function, asked about paths outside the prefix. */
  custom?: CustomRoutes;
}

/**
 * The HTTP side of the admission road. Requests to an agent take the same pipeline as
 * upgrades, on their headers alone: a refused or locked-out caller is answered before a
 * byte of its body is read, and only an admitted request's body is buffered (up to
 * `maxBodyBytes`).
 */
export class HttpRoutes {
  readonly #ctx: HttpContext;

  constructor(ctx: HttpContext) {
    this.#ctx = ctx;
  }

  owns(pathname: string): boolean {
    return (
      pathname === "/healthz" ||
      pathname === "/.well-known/jwks.json" ||
      pathname.startsWith(`/${this.#ctx.prefix}/`)
    );
  }

  /** A `node:http` request; resolves false when the path is not Outpost's. */
  async handleRequest(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const rawUrl = req.url ?? "/";
    let url: URL;
    try {
      url = new URL(rawUrl, `http://${req.headers.host ?? "localhost"}`);
    } catch {
      res.writeHead(400).end();
      return true;
    }
    if (!this.owns(url.pathname) && this.#ctx.custom === undefined) return false;
    let response: Response | null;
    try {
      response = await this.#route(url, {
        method: req.method ?? "GET",
        headers: headerReader(req.headers),
        remoteAddress: clientAddress(req, this.#ctx.trustProxy),
        urlBytes: Buffer.byteLength(rawUrl),
        body: (admitted) =>
          toRequest(req, url, this.#ctx.maxBodyBytes).catch((error) => {
            admitted.release();
            throw error;
          }),
      });
    } catch (error) {
      response =
        error instanceof BodyTooLargeError
          ? json(413, { error: "body_too_large" }, { connection: "close" })
          : json(500, { error: "internal_error" });
      if (!(error instanceof BodyTooLargeError))
        this.#ctx.logger.error({ err: error }, "request failed");
    }
    if (response === null) return false;
    // A refused request's body is never read: close the connection rather than drain it.
    if (response.status >= 400 && !req.complete) {
      res.setHeader("connection", "close");
      // What already arrived of the body is dropped, not held until the socket closes.
      req.resume();
    }
    await writeResponse(res, response);
    return true;
  }

  /** Fetch-style hosts: a `Request` in, a `Response` (or `null`: not Outpost's) out. */
  routeAgentRequest(request: Request, remoteAddress?: string): Promise<Response | null> {
    const url = new URL(request.url);
    return this.#route(url, {
      method: request.method,
      headers: request.headers,
      remoteAddress,
      urlBytes: Buffer.byteLength(url.pathname + url.search),
      body: async () => request,
    });
  }

  async #route(
    url: URL,
    incoming: {
      method: string;
      headers: { get(name: string): string | null };
      remoteAddress: string | undefined;
      urlBytes: number;
      /** The request with its body, read only once the request is admitted. */
      body: (admitted: Admitted) => Promise<Request>;
    },
  ): Promise<Response | null> {
    if (url.pathname === "/healthz") return this.#ctx.health();
    if (url.pathname === "/.well-known/jwks.json") {
      const policy = await this.#ctx.auth();
      if (policy?.jwks === undefined) return null;
      return json(200, await policy.jwks(), { "cache-control": "public, max-age=300" });
    }
    let route: Route | undefined;
    if (!url.pathname.startsWith(`/${this.#ctx.prefix}/`)) {
      // Not under the prefix: Outpost's only when the server's `route` function says so.
      route = await this.#ctx.custom?.resolve({
        url,
        headers: incoming.headers,
        remoteAddress: incoming.remoteAddress,
        websocket: false,
      });
      if (route === undefined) return null;
    }
    if (incoming.urlBytes > this.#ctx.maxUrlLength) {
      const refusal = new AuthError("url_too_long");
      this.#ctx.refusals.record(refusal, { remoteAddress: incoming.remoteAddress, url: "/" });
      return this.#ctx.refusals.response(refusal);
    }
    let admitted: Admitted | null;
    try {
      admitted = await this.#ctx.admission.admit({
        url,
        headers: incoming.headers,
        remoteAddress: incoming.remoteAddress,
        websocket: false,
        ...(route !== undefined && { route }),
      });
    } catch (error) {
      return this.#ctx.refusals.response(error as AuthError);
    }
    if (admitted === null) return json(503, { error: "gone" });
    const request = await incoming.body(admitted);
    if (admitted.kind === "remote") {
      try {
        return await this.#ctx.remote!.relay(admitted, request);
      } catch (error) {
        const refusal = new AuthError("owner_unavailable", undefined, { retryAfterMs: 1_000 });
        this.#ctx.logger.warn(
          { err: error, agent: admitted.agent },
          "relaying to the owner failed",
        );
        this.#ctx.refusals.record(refusal, { agent: admitted.agent, name: admitted.name, url });
        return this.#ctx.refusals.response(refusal);
      }
    }
    try {
      return await admitted.instance.fetch(request, admitted.session?.claims);
    } catch (error) {
      admitted.instance.reportError(undefined, error);
      return json(500, { error: "internal_error" });
    } finally {
      admitted.release();
    }
  }
}

import { randomUUID } from "node:crypto";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { resolve } from "node:path";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { type WebSocket, WebSocketServer } from "ws";
import type { AgentClass } from "../agent/agent.js";
import { ServerConnection } from "../agent/connection.js";
import type { AgentInstance } from "../agent/instance.js";
import { InstanceRegistry } from "../agent/registry.js";
import type { AuthAction, AuthPolicy, AuthRequest, AuthSession } from "../auth/policy.js";
import type { AuthStateStore } from "../auth/state-store.js";
import { CloseCode } from "../protocol/close-codes.js";
import { FrameType } from "../protocol/frames.js";
import type { Durability } from "../storage/agent-database.js";
import { openAuthStateStore } from "../storage/auth-state.js";
import {
  BodyTooLargeError,
  headerReader,
  json,
  rejectUpgrade,
  toHeaders,
  toRequest,
  writeResponse,
} from "./http.js";
import { createLogger, type LoggerSetting, redactUrl } from "./logger.js";
import { agentUrlNames, Router } from "./router.js";

/** Options shared by `serve()` and `createAgentServer()`. */
export interface AgentServerOptions<Env = unknown> {
  /** The agents to host, by class name: `{ Counter }` is reached at `/agents/counter/:name`. */
  agents: Record<string, AgentClass>;
  /** Attach to this existing `node:http` server (WebSocket upgrades under the prefix). */
  server?: Server;
  /** Where each instance's SQLite database lives. Default `.outpost` in the working directory. */
  dataDir?: string;
  /** Given to every agent as `this.env`. */
  env?: Env;
  /** Authentication for every connection and request, e.g. `tokenAuth({ keys })`. */
  auth?: AuthPolicy | Promise<AuthPolicy>;
  /** A pino logger, `false`, or `{ level, pretty }`. Default: JSON lines at `info`. */
  logger?: LoggerSetting;
  /** URL prefix of agents. Default `agents`. */
  prefix?: string;
  /** Largest frame accepted, in bytes; larger closes with 1009. Default 1 MiB. */
  maxPayload?: number;
  /** Largest HTTP request body to an agent, in bytes. Default 1 MiB. */
  maxBodyBytes?: number;
  /** Open connections one instance accepts; more are closed with 1013. Default 10,000. */
  maxConnectionsPerInstance?: number;
  /** Bytes buffered for a client that does not read before it is dropped. Default 8 MiB. */
  maxBufferedBytes?: number;
  /** Frames waiting behind a slow handler before the client is closed 1013. Default 1,024. */
  maxQueuedFrames?: number;
  /** Longest request URL accepted on an upgrade, in bytes. Default 8 KiB. */
  maxUrlLength?: number;
  /** Milliseconds an idle instance stays in memory. Default 60 s. */
  idleTimeout?: number;
  /** "process" (default): writes survive the process dying; "full": also power loss. */
  durability?: Durability;
  /** How long shutdown waits for running handlers, in ms. Default 5 s. */
  shutdownTimeout?: number;
  /**
   * Milliseconds between pings; a connection that has not answered the previous ping is
   * dropped, so sockets whose network vanished do not stay open. `0` turns it off.
   * Default 30 s.
   */
  heartbeatInterval?: number;
  /**
   * Take the client address from the last `X-Forwarded-For` entry, the one your proxy
   * appended (only behind exactly one proxy you run).
   */
  trustProxy?: boolean;
}

/** Counters and sizes for metrics. */
export interface AgentServerStats {
  instances: number;
  connections: number;
  /** Refused connections and requests, by reason code. */
  refusals: Record<string, number>;
}

/** An Outpost server that is not (necessarily) listening on its own. */
export interface AgentServer {
  /** Handle a `node:http` upgrade request. Sockets for other paths get 404. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Handle a `node:http` request; resolves false when the path is not Outpost's. */
  handleRequest(req: IncomingMessage, res: ServerResponse): Promise<boolean>;
  /** Fetch-style HTTP (for Hono and friends): a `Response`, or `null` when not Outpost's. */
  routeAgentRequest(request: Request, remoteAddress?: string): Promise<Response | null>;
  /** Revoke by subject or token id; live matching connections are closed 4009. */
  revoke(target: { sub?: string; jti?: string }): Promise<number>;
  /** Instances, connections and refusal counters. */
  stats(): AgentServerStats;
  readonly logger: Logger;
  /** Close every connection with 1001, finish running handlers, close the databases. */
  close(): Promise<void>;
}

interface Refusal {
  code: string;
  closeCode: number;
  status: number;
  message: string;
  retryAfterMs?: number;
  fingerprint?: string;
}

const DEFAULTS = {
  prefix: "agents",
  maxPayload: 1024 * 1024,
  maxBodyBytes: 1024 * 1024,
  maxConnectionsPerInstance: 10_000,
  maxBufferedBytes: 8 * 1024 * 1024,
  maxQueuedFrames: 1024,
  maxUrlLength: 8 * 1024,
  idleTimeout: 60_000,
  shutdownTimeout: 5_000,
  heartbeatInterval: 30_000,
};

/**
 * Create an Outpost server. With `server`, it attaches to that `node:http` server's
 * upgrades; call `handleRequest` (or `routeAgentRequest`) from your own request handler
 * for plain HTTP to agents.
 *
 * @example
 * const http = createServer((req, res) => outpost.handleRequest(req, res).then((done) => {
 *   if (!done) res.writeHead(404).end();
 * }));
 * const outpost = createAgentServer({ agents: { Counter }, server: http });
 */
export function createAgentServer<Env>(options: AgentServerOptions<Env>): AgentServer {
  const server = new OutpostServer(options as AgentServerOptions<unknown>);
  if (options.server !== undefined) {
    const http = options.server;
    const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      server.handleUpgrade(req, socket, head);
    http.on("upgrade", onUpgrade);
    const close = server.close.bind(server);
    server.close = async () => {
      http.off("upgrade", onUpgrade);
      await close();
    };
  }
  return server;
}

/** Thrown as a value, never to a client: everything a refusal needs. */
function toRefusal(error: unknown): Refusal {
  if (error !== null && typeof error === "object") {
    const e = error as Partial<Refusal> & { message?: string };
    if (typeof e.code === "string" && typeof e.closeCode === "number") {
      return {
        code: e.code,
        closeCode: e.closeCode,
        status: typeof e.status === "number" ? e.status : e.closeCode === 4001 ? 401 : 403,
        message: e.message || e.code,
        ...(typeof e.retryAfterMs === "number" && { retryAfterMs: e.retryAfterMs }),
        ...(typeof e.fingerprint === "string" && { fingerprint: e.fingerprint }),
      };
    }
  }
  return { code: "internal_error", closeCode: 1011, status: 500, message: "internal error" };
}

/**
 * Build `ctx.request` only when an agent reads it. A separate function so the closure does
 * not share a scope with the socket's listeners, which would keep the upgrade URL (token
 * included) and headers alive for the life of every connection.
 */
function requestFactory(url: URL, raw: IncomingMessage["headers"]): () => Request {
  return () => new Request(url, { headers: toHeaders(raw) });
}

/** `connection.uri`, computed on first read: most connections never log it. */
function redactedUri(url: URL): () => string {
  const href = url.href;
  return () => redactUrl(href);
}

function closeReason(refusal: Refusal): string {
  if (refusal.retryAfterMs === undefined) return refusal.message;
  const seconds = Math.max(1, Math.ceil(refusal.retryAfterMs / 1000));
  return /retry in \d+s/.test(refusal.message)
    ? refusal.message
    : `${refusal.message}; retry in ${seconds}s`;
}

class OutpostServer implements AgentServer {
  readonly logger: Logger;
  readonly #options: Required<
    Omit<AgentServerOptions, "server" | "auth" | "logger" | "env" | "agents" | "trustProxy">
  > & { trustProxy: boolean };
  readonly #router: Router;
  readonly #registry: InstanceRegistry;
  readonly #wss: WebSocketServer;
  readonly #auth: Promise<AuthPolicy | undefined>;
  #policy: AuthPolicy | undefined;
  #authState: AuthStateStore | undefined;
  readonly #connections = new Set<ServerConnection>();
  /** What a refresh needs to re-ask the auth layer; kept small, one per connection. */
  readonly #origins = new WeakMap<
    ServerConnection,
    { agent: string; name: string; href: string; origin: string | null }
  >();
  #limits!: { maxBufferedBytes: number; maxQueuedFrames: number };
  readonly #selectedProtocol = new WeakMap<IncomingMessage, string>();
  /** Upgrades accepted for an instance but not yet attached, for the connection limit. */
  readonly #pendingAccepts = new Map<string, number>();
  readonly #refusals: Record<string, number> = {};
  #closing: Promise<void> | undefined;
  #heartbeat: NodeJS.Timeout | undefined;

  constructor(options: AgentServerOptions) {
    this.logger = createLogger(options.logger);
    this.#options = {
      prefix: options.prefix ?? DEFAULTS.prefix,
      dataDir: resolve(options.dataDir ?? ".outpost"),
      maxPayload: options.maxPayload ?? DEFAULTS.maxPayload,
      maxBodyBytes: options.maxBodyBytes ?? DEFAULTS.maxBodyBytes,
      maxConnectionsPerInstance:
        options.maxConnectionsPerInstance ?? DEFAULTS.maxConnectionsPerInstance,
      maxBufferedBytes: options.maxBufferedBytes ?? DEFAULTS.maxBufferedBytes,
      maxQueuedFrames: options.maxQueuedFrames ?? DEFAULTS.maxQueuedFrames,
      maxUrlLength: options.maxUrlLength ?? DEFAULTS.maxUrlLength,
      idleTimeout: options.idleTimeout ?? DEFAULTS.idleTimeout,
      durability: options.durability ?? "process",
      shutdownTimeout: options.shutdownTimeout ?? DEFAULTS.shutdownTimeout,
      heartbeatInterval: options.heartbeatInterval ?? DEFAULTS.heartbeatInterval,
      trustProxy: options.trustProxy ?? false,
    };
    this.#limits = {
      maxBufferedBytes: this.#options.maxBufferedBytes,
      maxQueuedFrames: this.#options.maxQueuedFrames,
    };
    const agents = agentUrlNames(options.agents);
    if (agents.size === 0) throw new Error("serve(): `agents` must name at least one Agent class");
    this.#router = new Router(this.#options.prefix, agents.keys());
    this.#auth = Promise.resolve(options.auth).then(async (policy) => {
      // --- Durable auth state: revocations and spent tickets kept in the data directory,
      // loaded before anything is served (every request awaits #auth), closed on shutdown.
      if (policy?.useStateStore !== undefined) {
        this.#authState = openAuthStateStore(this.#options.dataDir, this.#options.durability);
        // biome-ignore lint/correctness/useHookAtTopLevel: an AuthPolicy method, not a React hook
        await policy.useStateStore(this.#authState);
      }
      // --- end durable auth state
      this.#policy = policy;
      return policy;
    });
    // An unhandled rejection here would crash the process before anyone awaits it.
    this.#auth.catch((error) => this.logger.error({ err: error }, "auth setup failed"));
    this.#registry = new InstanceRegistry({
      agents,
      dataDir: this.#options.dataDir,
      env: options.env,
      logger: this.logger,
      durability: this.#options.durability,
      idleTimeout: this.#options.idleTimeout,
      authorize: (connection, action) => this.#authorize(connection, action),
      refresh: (connection, token) => this.#refresh(connection, token),
    });
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: this.#options.maxPayload,
      clientTracking: false,
      perMessageDeflate: false,
      handleProtocols: (protocols, req) => {
        const chosen = this.#selectedProtocol.get(req);
        if (chosen !== undefined && protocols.has(chosen)) return chosen;
        if (protocols.has("outpost")) return "outpost";
        // Browsers fail a handshake whose offered protocols get no answer at all, but a
        // protocol carrying a credential is never echoed back in a response header.
        for (const protocol of protocols) {
          if (!protocol.startsWith("outpost.bearer.")) return protocol;
        }
        return false;
      },
    });
    if (this.#options.heartbeatInterval > 0) {
      this.#heartbeat = setInterval(() => {
        let dropped = 0;
        for (const connection of this.#connections) if (!connection.heartbeat()) dropped++;
        if (dropped > 0)
          this.logger.info({ dropped }, "dropped connections that stopped answering");
      }, this.#options.heartbeatInterval);
      this.#heartbeat.unref();
    }
  }

  /** Resolves once the auth policy (which may be a promise) is ready. */
  ready(): Promise<unknown> {
    return this.#auth;
  }

  stats(): AgentServerStats {
    return {
      instances: this.#registry.size,
      connections: this.#connections.size,
      refusals: { ...this.#refusals },
    };
  }

  #clientAddress(req: IncomingMessage): string {
    if (this.#options.trustProxy) {
      const forwarded = req.headers["x-forwarded-for"];
      // The last entry is the one our proxy appended; anything left of it came from the
      // client and would let it pick its own address (and dodge the per-address limits).
      const last = (Array.isArray(forwarded) ? forwarded.at(-1) : forwarded)
        ?.split(",")
        .at(-1)
        ?.trim();
      if (last) return last;
    }
    return req.socket.remoteAddress ?? "unknown";
  }

  #recordRefusal(
    refusal: Refusal,
    context: {
      agent?: string;
      name?: string;
      remoteAddress: string;
      origin?: string | null;
      url: URL | string;
    },
  ): void {
    this.#refusals[refusal.code] = (this.#refusals[refusal.code] ?? 0) + 1;
    this.logger.warn(
      {
        event: "auth_refused",
        code: refusal.code,
        closeCode: refusal.closeCode,
        agent: context.agent,
        instance: context.name,
        ip: context.remoteAddress,
        origin: context.origin ?? undefined,
        fingerprint: refusal.fingerprint,
        url: redactUrl(context.url),
      },
      "refused",
    );
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on("error", () => socket.destroy());
    this.#upgrade(req, socket, head).catch((error) => {
      this.logger.error({ err: error }, "upgrade failed");
      rejectUpgrade(socket, 503);
    });
  }

  async #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const rawUrl = req.url ?? "/";
    if (Buffer.byteLength(rawUrl) > this.#options.maxUrlLength) return rejectUpgrade(socket, 414);
    let url: URL;
    try {
      url = new URL(rawUrl, `http://${req.headers.host ?? "localhost"}`);
    } catch {
      return rejectUpgrade(socket, 400);
    }
    const route = this.#router.match(url.pathname);
    if (
      route.kind === "not-found" ||
      (route.kind === "agent" && route.rest !== "" && route.rest !== "/")
    ) {
      return rejectUpgrade(socket, 404);
    }
    if (route.kind === "bad-name") return rejectUpgrade(socket, 400, route.reason);
    if (this.#closing) return rejectUpgrade(socket, 503);
    const remoteAddress = this.#clientAddress(req);
    const authRequest: AuthRequest = {
      agent: route.agent,
      name: route.name,
      url,
      headers: headerReader(req.headers),
      remoteAddress,
      websocket: true,
    };
    const policy = await this.#auth;
    let session: AuthSession | undefined;
    if (policy !== undefined) {
      try {
        session = await policy.authenticate(authRequest);
      } catch (error) {
        const refusal = toRefusal(error);
        if (refusal.code === "internal_error") this.logger.error({ err: error }, "auth failed");
        this.#recordRefusal(refusal, { ...authRequest, origin: authRequest.headers.get("origin") });
        if (policy.rejectWithHttp) {
          const headers: Record<string, string> = {};
          if (refusal.retryAfterMs !== undefined) {
            headers["Retry-After"] = String(Math.ceil(refusal.retryAfterMs / 1000));
          }
          return rejectUpgrade(socket, refusal.status, closeReason(refusal), headers);
        }
        return this.#acceptAndClose(req, socket, head, refusal.closeCode, closeReason(refusal));
      }
      if (session.protocol !== undefined) this.#selectedProtocol.set(req, session.protocol);
    }
    if (socket.destroyed) return;

    const key = `${route.agent}/${route.name}`;
    const open =
      (this.#registry.peek(route.agent, route.name)?.connectionCount ?? 0) +
      (this.#pendingAccepts.get(key) ?? 0);
    if (open >= this.#options.maxConnectionsPerInstance) {
      this.#recordRefusal(
        {
          code: "too_many_connections",
          closeCode: CloseCode.TryAgainLater,
          status: 503,
          message: "",
        },
        { ...authRequest, origin: authRequest.headers.get("origin") },
      );
      return this.#acceptAndClose(
        req,
        socket,
        head,
        CloseCode.TryAgainLater,
        "too many connections",
      );
    }

    this.#pendingAccepts.set(key, (this.#pendingAccepts.get(key) ?? 0) + 1);
    let instance: AgentInstance;
    try {
      instance = await this.#registry.get(route.agent, route.name);
    } catch {
      this.#release(key);
      return this.#acceptAndClose(
        req,
        socket,
        head,
        CloseCode.InternalError,
        "agent failed to start",
      );
    }
    if (socket.destroyed || this.#closing) {
      this.#release(key);
      this.#registry.release(instance);
      return socket.destroyed ? undefined : rejectUpgrade(socket, 503);
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      this.#release(key);
      this.#attach(ws, instance, authRequest, session, req);
    });
  }

  #release(key: string): void {
    const count = (this.#pendingAccepts.get(key) ?? 1) - 1;
    if (count <= 0) this.#pendingAccepts.delete(key);
    else this.#pendingAccepts.set(key, count);
  }

  /**
   * Accept the upgrade and close at once: a browser can read a 4xxx close code, but a
   * refused handshake looks like any network failure (1006). Nothing else is sent.
   */
  #acceptAndClose(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    code: number,
    reason: string,
  ): void {
    if (socket.destroyed) return;
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on("error", () => {});
      ws.close(code, reason.slice(0, 120));
      // A client that never answers the close must not hold the socket.
      setTimeout(() => ws.terminate(), 2000).unref();
    });
  }

  #attach(
    ws: WebSocket,
    instance: AgentInstance,
    authRequest: AuthRequest,
    session: AuthSession | undefined,
    req: IncomingMessage,
  ): void {
    const connection = new ServerConnection({
      id: randomUUID(),
      socket: ws,
      uri: redactedUri(authRequest.url),
      remoteAddress: authRequest.remoteAddress,
      session,
      limits: this.#limits,
      onTaskError: (error) => instance.reportError(connection, error),
    });
    this.#connections.add(connection);
    if (session !== undefined) {
      this.#origins.set(connection, {
        agent: authRequest.agent,
        name: authRequest.name,
        // Without the query: a refresh does not need it, and it holds the token.
        href: `${authRequest.url.origin}${authRequest.url.pathname}`,
        origin: req.headers.origin ?? null,
      });
      this.#armExpiry(connection);
    }
    ws.on("message", (data, isBinary) => {
      connection.markAlive();
      instance.receive(connection, data as Buffer, isBinary);
    });
    ws.on("pong", () => connection.markAlive());
    ws.on("error", (error) => {
      this.logger.debug({ err: error, connection: connection.id }, "socket error");
    });
    ws.on("close", (code, reason) => {
      this.#connections.delete(connection);
      instance.detach(connection, code, reason.toString());
    });
    instance.attach(connection, requestFactory(authRequest.url, req.headers));
  }

  /** The request a connection was authenticated with, rebuilt for a refresh. */
  #authRequestOf(connection: ServerConnection): AuthRequest | undefined {
    const saved = this.#origins.get(connection);
    if (saved === undefined) return undefined;
    const headers = new Headers();
    if (saved.origin !== null) headers.set("origin", saved.origin);
    return {
      agent: saved.agent,
      name: saved.name,
      url: new URL(saved.href),
      headers,
      remoteAddress: connection.remoteAddress,
      websocket: true,
    };
  }

  #armExpiry(connection: ServerConnection): void {
    connection.expireAt(connection.session?.expiresAt, () => {
      this.#countRefusal("token_expired");
      connection.close(CloseCode.Unauthorized, "token expired");
    });
  }

  #countRefusal(code: string): void {
    this.#refusals[code] = (this.#refusals[code] ?? 0) + 1;
  }

  #authorize(connection: ServerConnection, action: AuthAction): string | undefined {
    const policy = this.#policy;
    if (policy === undefined || connection.session === undefined) return undefined;
    try {
      policy.authorize(connection.session, action);
      return undefined;
    } catch (error) {
      const refusal = toRefusal(error);
      const saved = this.#origins.get(connection);
      this.#recordRefusal(refusal, {
        agent: saved?.agent,
        name: saved?.name,
        remoteAddress: connection.remoteAddress,
        origin: saved?.origin,
        url: connection.uri,
      });
      if (refusal.closeCode === CloseCode.Unauthorized || refusal.closeCode === CloseCode.Revoked) {
        connection.close(refusal.closeCode, refusal.message);
      }
      return refusal.message;
    }
  }

  async #refresh(connection: ServerConnection, token: string): Promise<void> {
    const policy = this.#policy;
    const request = this.#authRequestOf(connection);
    if (policy === undefined || connection.session === undefined || request === undefined) {
      connection.sendFrame({
        type: FrameType.AuthResult,
        ok: false,
        code: "auth_not_enabled",
        error: "this server does not use token authentication",
      });
      return;
    }
    try {
      const next = await policy.refresh(connection.session, token, request);
      if (!connection.isOpen) return;
      connection.session = next;
      this.#armExpiry(connection);
      connection.sendFrame({
        type: FrameType.AuthResult,
        ok: true,
        ...(next.expiresAt !== undefined && { exp: Math.floor(next.expiresAt / 1000) }),
      });
    } catch (error) {
      const refusal = toRefusal(error);
      this.#recordRefusal(refusal, {
        agent: request.agent,
        name: request.name,
        remoteAddress: connection.remoteAddress,
        origin: request.headers.get("origin"),
        url: connection.uri,
      });
      // The connection keeps its current credentials until they expire.
      connection.sendFrame({
        type: FrameType.AuthResult,
        ok: false,
        code: refusal.code,
        error: refusal.message,
      });
    }
  }

  async revoke(target: { sub?: string; jti?: string }): Promise<number> {
    const policy = await this.#auth;
    if (policy === undefined) throw new Error("revoke() needs an `auth` policy");
    if (target.sub === undefined && target.jti === undefined) {
      throw new TypeError("revoke() needs a `sub` or a `jti`");
    }
    policy.revoke(target);
    let closed = 0;
    for (const connection of this.#connections) {
      if (connection.session !== undefined && policy.isRevoked(connection.session)) {
        connection.close(CloseCode.Revoked, "session revoked");
        closed++;
      }
    }
    this.logger.info({ event: "revoked", ...target, closed }, "revoked");
    return closed;
  }

  async handleRequest(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    let url: URL;
    try {
      url = new URL(req.url ?? "/", `http://${req.headers.host ?? "localhost"}`);
    } catch {
      res.writeHead(400).end();
      return true;
    }
    if (!this.#owns(url.pathname)) return false;
    let response: Response | null;
    try {
      // Unknown agents and bad names are answered before any body is read.
      const request =
        this.#router.match(url.pathname).kind === "agent"
          ? await toRequest(req, url, this.#options.maxBodyBytes)
          : new Request(url, { method: req.method ?? "GET", headers: toHeaders(req.headers) });
      response = await this.routeAgentRequest(request, this.#clientAddress(req));
    } catch (error) {
      response =
        error instanceof BodyTooLargeError
          ? json(413, { error: "body_too_large" }, { connection: "close" })
          : json(500, { error: "internal_error" });
      if (!(error instanceof BodyTooLargeError)) {
        this.logger.error({ err: error }, "request failed");
      }
    }
    if (response === null) return false;
    await writeResponse(res, response);
    return true;
  }

  #owns(pathname: string): boolean {
    return (
      pathname === "/healthz" ||
      pathname === "/.well-known/jwks.json" ||
      pathname.startsWith(`/${this.#options.prefix}/`)
    );
  }

  async routeAgentRequest(request: Request, remoteAddress = "unknown"): Promise<Response | null> {
    const url = new URL(request.url);
    if (url.pathname === "/healthz") {
      return json(this.#closing ? 503 : 200, {
        status: this.#closing ? "shutting_down" : "ok",
        instances: this.#registry.size,
        connections: this.#connections.size,
      });
    }
    const policy = await this.#auth;
    if (url.pathname === "/.well-known/jwks.json") {
      if (policy?.jwks === undefined) return null;
      return json(200, await policy.jwks(), { "cache-control": "public, max-age=300" });
    }
    const route = this.#router.match(url.pathname);
    if (route.kind === "not-found") {
      return url.pathname.startsWith(`/${this.#options.prefix}/`)
        ? json(404, { error: "not_found" })
        : null;
    }
    if (route.kind === "bad-name")
      return json(400, { error: "bad_instance_name", message: route.reason });
    if (this.#closing) return json(503, { error: "shutting_down" });
    if (policy !== undefined) {
      const authRequest: AuthRequest = {
        agent: route.agent,
        name: route.name,
        url,
        headers: request.headers,
        remoteAddress,
        websocket: false,
      };
      try {
        await policy.authenticate(authRequest);
      } catch (error) {
        const refusal = toRefusal(error);
        this.#recordRefusal(refusal, { ...authRequest, origin: request.headers.get("origin") });
        const headers: Record<string, string> = {};
        if (refusal.retryAfterMs !== undefined) {
          headers["retry-after"] = String(Math.ceil(refusal.retryAfterMs / 1000));
        }
        return json(
          refusal.status,
          { error: refusal.code, message: closeReason(refusal) },
          headers,
        );
      }
    }
    let instance: AgentInstance;
    try {
      instance = await this.#registry.get(route.agent, route.name);
    } catch {
      return json(500, { error: "agent_failed_to_start" });
    }
    try {
      return await instance.fetch(request);
    } catch (error) {
      instance.reportError(undefined, error);
      return json(500, { error: "internal_error" });
    }
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    const started = Date.now();
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    const instances = [...this.#registry.instances];
    await Promise.all(
      instances.map((instance) =>
        instance.drain(CloseCode.GoingAway, "server shutting down", this.#options.shutdownTimeout),
      ),
    );
    for (const connection of this.#connections)
      connection.close(CloseCode.GoingAway, "server shutting down");
    await this.#registry.close();
    await this.#authState?.close();
    this.#wss.close();
    this.logger.info({ ms: Date.now() - started, instances: instances.length }, "closed");
  }
}

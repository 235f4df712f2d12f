import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { type WebSocket, WebSocketServer } from "ws";
import { type ConnectionLimits, ServerConnection } from "../agent/connection.js";
import { type AuthFacts, ConnectionAuth } from "../agent/connection-auth.js";
import type { AgentInstance } from "../agent/instance.js";
import { AuthError, isAuthError } from "../auth/errors.js";
import type { NodeLink } from "../cluster/node-link.js";
import type { Admission, Admitted, LocalAdmission, RemoteAdmission } from "./admission.js";
import { clientAddress } from "./client-address.js";
import { acceptUpgrade, headerReader, toHeaders } from "./http.js";
import { redactUrl } from "./logger.js";
import type { Refusals } from "./refusals.js";
import type { RemoteBridge } from "./remote.js";

/** What the upgrade adapter needs from the server. */
export interface UpgradeContext {
  admission: Admission;
  refusals: Refusals;
  logger: Logger;
  /** The connections of this server, for heartbeats, revocation and shutdown. */
  connections: Set<ServerConnection>;
  limits: ConnectionLimits;
  maxPayload: number;
  maxUrlLength: number;
  trustProxy: boolean;
  /** Cluster mode: carries connections for instances other nodes own. */
  remote?: RemoteBridge;
  /** Query parameters that carry credentials, redacted in `connection.uri`. */
  credentialParams: () => readonly string[];
  /** Answer refusals with HTTP 401/403 instead of accept-and-close (the policy's choice). */
  rejectWithHttp: () => boolean;
}

/**
 * The WebSocket side of the admission road: transport checks (URL size, a handshake `ws`
 * will accept), then the shared pipeline, then the socket is accepted and attached — or
 * accepted and closed with the refusal's code and nothing else.
 */
export class UpgradeHandler {
  readonly #ctx: UpgradeContext;
  readonly #wss: WebSocketServer;
  /** Subprotocol chosen by authentication (a token sent as a subprotocol), per request. */
  readonly #protocolOf = new WeakMap<IncomingMessage, string>();

  constructor(ctx: UpgradeContext) {
    this.#ctx = ctx;
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: ctx.maxPayload,
      clientTracking: false,
      perMessageDeflate: false,
      handleProtocols: (protocols, req) => {
        const chosen = this.#protocolOf.get(req);
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
  }

  handle(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on("error", destroyOnError);
    let transport: Transport;
    try {
      transport = this.#checkTransport(req);
    } catch (error) {
      this.#refused(error, req, socket, head);
      return;
    }
    // One `then` for both outcomes, each handling its own failures: every promise on the
    // connect path costs (and, once `getCurrentAgent`'s AsyncLocalStorage is in use on
    // Node 20, a hook call for each).
    this.#ctx.admission
      .admit({
        url: transport.url,
        headers: headerReader(req.headers),
        remoteAddress: transport.remoteAddress,
        websocket: true,
        gone: () => socket.destroyed,
      })
      .then(
        (admitted) => this.#admitted(admitted, req, socket, head, transport),
        (error) => this.#refused(error, req, socket, head),
      );
  }

  close(): void {
    this.#wss.close();
  }

  /** The road's answer: attach the socket here, or carry it to the instance's owner. */
  #admitted(
    admitted: Admitted | null,
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    transport: Transport,
  ): void {
    try {
      // The client went away meanwhile: nobody to answer.
      if (admitted === null) return;
      if (admitted.session?.protocol !== undefined) {
        this.#protocolOf.set(req, admitted.session.protocol);
      }
      if (admitted.kind === "remote") {
        void this.#remote(admitted, req, socket, head, transport);
        return;
      }
      // `ws` completes a handshake synchronously (no `verifyClient`): when `handleUpgrade`
      // returns, the socket is attached and counted by its instance, or `ws` refused it.
      // Either way the slot admission reserved goes back now.
      try {
        // When no connect hook has to be waited for, identity, state and the MCP list go
        // out in the same write as the 101 answer.
        acceptUpgrade(this.#wss, req, socket, head, (ws) => {
          // ws handles the socket's errors from here on.
          socket.off("error", destroyOnError);
          this.#attach(ws, req, admitted, transport);
        });
      } finally {
        admitted.release();
      }
    } catch (error) {
      this.#failed(error, socket);
    }
  }

  /** Cluster mode: open the link to the owner, then carry the socket over it. */
  async #remote(
    admitted: RemoteAdmission,
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    transport: Transport,
  ): Promise<void> {
    let link: NodeLink;
    try {
      link = await this.#link(admitted, transport);
    } catch (error) {
      this.#refused(error, req, socket, head);
      return;
    }
    try {
      this.#carry(req, socket, head, admitted, transport, link);
    } catch (error) {
      this.#failed(error, socket);
    }
  }

  /**
   * Every refusal on the road is an AuthError, already counted and logged: answer it with
   * its wire form. Anything else is a failure of ours.
   */
  #refused(error: unknown, req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (!isAuthError(error)) {
      this.#failed(error, socket);
      return;
    }
    try {
      this.#ctx.refusals.upgrade(error, this.#wss, req, socket, head, this.#ctx.rejectWithHttp());
    } catch (failure) {
      this.#failed(failure, socket);
    }
  }

  #failed(error: unknown, socket: Duplex): void {
    this.#ctx.logger.error({ err: error }, "upgrade failed");
    if (!socket.destroyed) socket.destroy();
  }

  /**
   * What is checked before the admission road, because it is about the transport: URL size
   * and syntax, and a handshake `ws` will accept. Throws the refusal, counted and logged.
   */
  #checkTransport(req: IncomingMessage): Transport {
    const remoteAddress = clientAddress(req, this.#ctx.trustProxy);
    const rawUrl = req.url ?? "/";
    let url: URL | undefined;
    let early: AuthError | undefined;
    if (Buffer.byteLength(rawUrl) > this.#ctx.maxUrlLength) early = new AuthError("url_too_long");
    else {
      try {
        url = new URL(rawUrl, `http://${req.headers.host ?? "localhost"}`);
      } catch {
        early = new AuthError("bad_handshake", "bad request URL");
      }
    }
    // What `ws` would refuse anyway is refused before any work, so a broken handshake from
    // a token holder can neither start an instance nor hold a connection slot.
    early ??= checkHandshake(req);
    if (early !== undefined || url === undefined) {
      const refusal = early ?? new AuthError("bad_handshake");
      this.#ctx.refusals.record(refusal, { remoteAddress, url: rawUrl.slice(0, 2048) });
      throw refusal;
    }
    return { url, remoteAddress };
  }

  /** Cluster mode: the instance lives on another node; open the link to it. */
  async #link(admitted: RemoteAdmission, transport: Transport): Promise<NodeLink> {
    try {
      return await this.#ctx.remote!.link(admitted);
    } catch {
      const refusal = new AuthError("owner_unavailable", undefined, { retryAfterMs: 1_000 });
      this.#ctx.refusals.record(refusal, {
        agent: admitted.agent,
        name: admitted.name,
        remoteAddress: transport.remoteAddress,
        url: transport.url,
      });
      throw refusal;
    }
  }

  /** Cluster mode: accept the socket and pipe it over the link to the instance's owner. */
  #carry(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    admitted: RemoteAdmission,
    transport: Transport,
    link: NodeLink,
  ): void {
    if (socket.destroyed) return;
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      socket.off("error", destroyOnError);
      this.#ctx.remote!.carry(ws, req, transport.url, admitted, link);
    });
  }

  #attach(
    ws: WebSocket,
    req: IncomingMessage,
    admitted: LocalAdmission,
    { url, remoteAddress }: Transport,
  ): void {
    const { instance, policy, session } = admitted;
    const facts: AuthFacts = {
      agent: admitted.agent,
      name: admitted.name,
      // Without the query: a refresh does not need it, and it holds the token.
      path: detached(url.pathname),
      origin: req.headers.origin ?? null,
      remoteAddress,
    };
    const auth =
      policy !== undefined && session !== undefined
        ? new ConnectionAuth(policy, session, facts, this.#ctx.refusals.record)
        : undefined;
    const connection = new ServerConnection({
      id: connectionId(),
      socket: ws,
      uri: redactedUri(url, facts.path, this.#ctx.credentialParams()),
      remoteAddress: remoteAddress ?? "unknown",
      auth,
      limits: this.#ctx.limits,
      // Not spread in: a literal that spreads before its last properties is built on V8's
      // slow path, on every connect.
      gate: instance.gate,
      onTaskError: instance.reportTaskError,
    });
    this.#ctx.connections.add(connection);
    // Module-level listeners (`this` is the socket) and one small record per socket,
    // instead of four closures per connection.
    (ws as Attached)[ATTACHED] = { connection, instance, server: this.#ctx };
    ws.on("message", onMessage);
    ws.on("pong", onPong);
    ws.on("error", onError);
    ws.on("close", onClose);
    instance.attach(connection, requestFactory(url, req.headers));
  }
}

/** What the transport checks learned, carried with the admission. */
interface Transport {
  url: URL;
  remoteAddress: string | undefined;
}

/**
 * A new connection's id, as one flat string. `randomUUID()` returns its 36 characters as a
 * tree of ~14 concatenated pieces (~490 bytes for as long as the connection lives, measured).
 * Reading a character makes V8 flatten the tree in place into one 36-byte string (~67 bytes
 * once the pieces are collected), without the copy through a buffer this used to make.
 */
function connectionId(): string {
  const id = randomUUID();
  id.charCodeAt(0);
  return id;
}

/** Until the handshake completes, a socket error only ends that socket. */
function destroyOnError(this: Duplex): void {
  this.destroy();
}

const ATTACHED = Symbol("outpost.attached");

type Attached = WebSocket & {
  [ATTACHED]?: { connection: ServerConnection; instance: AgentInstance; server: UpgradeContext };
};

function onMessage(this: Attached, data: Buffer, isBinary: boolean): void {
  const attached = this[ATTACHED]!;
  attached.connection.markAlive();
  attached.instance.receive(attached.connection, data, isBinary);
}

function onPong(this: Attached): void {
  this[ATTACHED]!.connection.markAlive();
}

function onError(this: Attached, error: Error): void {
  const { connection, server } = this[ATTACHED]!;
  server.logger.debug({ err: error, connection: connection.id }, "socket error");
}

function onClose(this: Attached, code: number, reason: Buffer): void {
  const { connection, instance, server } = this[ATTACHED]!;
  server.connections.delete(connection);
  instance.detach(connection, code, reason.toString());
}

const KEY = /^[+/0-9A-Za-z]{22}==$/;

/** The checks `ws` makes before it completes a handshake, made before any work is done. */
function checkHandshake(req: IncomingMessage): AuthError | undefined {
  if (req.method !== "GET") return new AuthError("bad_handshake", "upgrade must be a GET");
  if (req.headers.upgrade?.toLowerCase() !== "websocket") {
    return new AuthError("bad_handshake", "not a WebSocket upgrade");
  }
  const key = req.headers["sec-websocket-key"];
  if (typeof key !== "string" || !KEY.test(key)) {
    return new AuthError("bad_handshake", "missing or invalid Sec-WebSocket-Key");
  }
  const version = req.headers["sec-websocket-version"];
  if (version !== "13" && version !== "8") {
    return new AuthError("bad_handshake", "unsupported Sec-WebSocket-Version");
  }
  return undefined;
}

/**
 * Build `ctx.request` only when an agent reads it. A separate function so the closure does
 * not share a scope with the socket's listeners, which would keep the upgrade URL (token
 * included) and headers alive for the life of every connection.
 */
function requestFactory(url: URL, raw: IncomingMessage["headers"]): () => Request {
  return () => new Request(url, { headers: toHeaders(raw) });
}

/**
 * A copy of `text` that does not point into a longer string. `URL` getters return slices
 * of the whole href, and a slice keeps its parent alive: a pathname kept for the life of a
 * connection would keep the upgrade URL, token included, with it.
 */
function detached(text: string): string {
  return ` ${text}`.slice(1);
}

/**
 * `connection.uri`, computed on first read: most connections never log it. In the common
 * case, where the only query parameter is the credential the policy reads, its value is
 * redacted whatever it is, so only the origin and path are kept: holding the whole URL
 * would keep a copy of the token alive (and ~400 bytes) for the life of the connection.
 */
function redactedUri(url: URL, path: string, params: readonly string[]): () => string {
  const param = params.length === 1 ? params[0]! : undefined;
  // Read from `search`, a slice of the href: `searchParams` would parse the query and copy
  // the token out of it on every connect.
  if (param !== undefined && isOnlyParam(url.search, param)) {
    const origin = detached(url.origin);
    // Spelled as `redactUrl` spells it, so the result is the same string either way.
    return () =>
      `${redactUrl(`${origin}${path}`, params)}?${new URLSearchParams({ [param]: "" })}[redacted]`;
  }
  const href = url.href;
  return () => redactUrl(href, params);
}

/**
 * Is `search` (`?a=b…`) exactly one parameter, named `param`? Spelled plainly only: a query
 * with an `&` or an encoded name takes the general path, which gives the same result.
 */
function isOnlyParam(search: string, param: string): boolean {
  if (search.length < param.length + 1 || search.includes("&")) return false;
  if (!search.startsWith(param, 1)) return false;
  const end = param.length + 1;
  return search.length === end || search.charCodeAt(end) === 61; /* = */
}

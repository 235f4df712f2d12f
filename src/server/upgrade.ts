import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { type WebSocket, WebSocketServer } from "ws";
import { type ConnectionLimits, ServerConnection } from "../agent/connection.js";
import { type AuthFacts, ConnectionAuth } from "../agent/connection-auth.js";
import type { AgentInstance } from "../agent/instance.js";
import { AuthError } from "../auth/errors.js";
import type { NodeLink } from "../cluster/node-link.js";
import type { Admission, Admitted, LocalAdmission, RemoteAdmission } from "./admission.js";
import { clientAddress } from "./client-address.js";
import { headerReader, toHeaders } from "./http.js";
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
    this.#upgrade(req, socket, head).catch((error) => {
      this.#ctx.logger.error({ err: error }, "upgrade failed");
      if (!socket.destroyed) socket.destroy();
    });
  }

  close(): void {
    this.#wss.close();
  }

  async #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const { admission, refusals } = this.#ctx;
    const remoteAddress = clientAddress(req, this.#ctx.trustProxy);
    const refuse = (refusal: AuthError) =>
      refusals.upgrade(refusal, this.#wss, req, socket, head, this.#ctx.rejectWithHttp());

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
      refusals.record(refusal, { remoteAddress, url: rawUrl.slice(0, 2048) });
      return refuse(refusal);
    }

    let admitted: Admitted | null;
    try {
      admitted = await admission.admit({
        url,
        headers: headerReader(req.headers),
        remoteAddress,
        websocket: true,
        gone: () => socket.destroyed,
      });
    } catch (error) {
      return refuse(error as AuthError);
    }
    if (admitted === null) return;
    if (admitted.session?.protocol !== undefined) {
      this.#protocolOf.set(req, admitted.session.protocol);
    }
    if (admitted.kind === "remote") return this.#carry(req, socket, head, url, admitted, refuse);
    const { release } = admitted;
    // The slot is ours until the socket is attached or goes away, whichever comes first.
    socket.once("close", release);
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      socket.off("close", release);
      // ws handles the socket's errors from here on.
      socket.off("error", destroyOnError);
      this.#attach(ws, req, url, remoteAddress, admitted);
      release();
    });
  }

  /** Cluster mode: the instance lives on another node; open the link, then pipe to it. */
  async #carry(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    url: URL,
    admitted: RemoteAdmission,
    refuse: (refusal: AuthError) => void,
  ): Promise<void> {
    const remote = this.#ctx.remote!;
    let link: NodeLink;
    try {
      link = await remote.link(admitted);
    } catch {
      const refusal = new AuthError("owner_unavailable", undefined, { retryAfterMs: 1_000 });
      this.#ctx.refusals.record(refusal, {
        agent: admitted.agent,
        name: admitted.name,
        remoteAddress: clientAddress(req, this.#ctx.trustProxy),
        url,
      });
      return refuse(refusal);
    }
    if (socket.destroyed) return;
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      socket.off("error", destroyOnError);
      remote.carry(ws, req, url, admitted, link);
    });
  }

  #attach(
    ws: WebSocket,
    req: IncomingMessage,
    url: URL,
    remoteAddress: string | undefined,
    admitted: LocalAdmission,
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
      id: randomUUID(),
      socket: ws,
      uri: redactedUri(url, facts.path, this.#ctx.credentialParams()),
      remoteAddress: remoteAddress ?? "unknown",
      auth,
      limits: this.#ctx.limits,
      ...(instance.gate !== undefined && { gate: instance.gate }),
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
  const query = url.searchParams;
  const param = params.length === 1 ? params[0]! : undefined;
  if (param !== undefined && query.size === 1 && query.has(param)) {
    const origin = detached(url.origin);
    // Spelled as `redactUrl` spells it, so the result is the same string either way.
    return () =>
      `${redactUrl(`${origin}${path}`, params)}?${new URLSearchParams({ [param]: "" })}[redacted]`;
  }
  const href = url.href;
  return () => redactUrl(href, params);
}

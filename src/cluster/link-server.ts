/**
 * The listener for node links: its own port, bound to the node's advertise address and
 * separate from the client-facing one, so no client route leads here. Every handshake must
 * carry a link credential (see `link-auth.ts`); anything else — a browser (`Origin`), a
 * client token, no credential, a wrong secret, an expired or replayed credential, a plain
 * HTTP request — gets HTTP 401 with an empty body and nothing is started for it.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { type Logger, pino } from "pino";
import { WebSocketServer } from "ws";
import { rejectUpgrade } from "../server/http.js";
import {
  importClusterSecret,
  LinkAuthError,
  type LinkClaims,
  mintLinkCredential,
  SpentCredentials,
  verifyLinkCredential,
} from "./link-auth.js";
import {
  LINK_DEFAULTS,
  type LinkHandlers,
  type NodeLinkOptions,
  type RequestHandler,
  type StreamHandler,
} from "./link-options.js";
import { type LinkTls, tlsServerOptions } from "./link-tls.js";
import { NodeLink } from "./node-link.js";

/** Response header in which the accepting node proves who it is to the dialer. */
export const NODE_PROOF_HEADER = "x-outpost-node";

/** Options of a node's link endpoint. */
export interface LinkServerOptions extends NodeLinkOptions {
  /** This node's id, as in the cluster's `nodes` table. */
  nodeId: string;
  /** The cluster secret every node shares, at least 32 bytes. */
  secret: string | Uint8Array;
  /** Where refusals and link events are logged (default: silent). */
  logger?: Logger;
  /** A connection that has not sent its whole handshake by then is dropped (default 5000 ms). */
  handshakeTimeoutMs?: number;
  /** Mutual TLS on every link (see `link-tls.ts`); without it, links are plain TCP. */
  tls?: LinkTls;
}

/**
 * A node's link endpoint: accepts links from peers and holds the handlers for streams and
 * requests on every link of this node (accepted here or dialed by a `LinkPool` on it).
 *
 * @example
 * const links = new LinkServer({ nodeId, secret: process.env.OUTPOST_CLUSTER_SECRET! });
 * links.onStream((stream, { target, meta }) => attachRemoteConnection(stream, target, meta));
 * links.onRequest(async ({ target, payload }) => ({ payload: await call(target, payload) }));
 * const { port } = await links.listen({ host: advertiseHost, port: 0 });
 */
export class LinkServer {
  readonly nodeId: string;
  readonly options: Required<NodeLinkOptions>;
  readonly logger: Logger;
  /** Shared by every link of this node; see `onStream` / `onRequest`. */
  readonly handlers: LinkHandlers = {};
  /** Mutual TLS of this node's links, accepted and dialed; `undefined`: plain TCP. */
  readonly tls: LinkTls | undefined;

  #key: Promise<CryptoKey>;
  #spent = new SpentCredentials();
  #http: Server | undefined;
  #wss: WebSocketServer;
  #links = new Set<NodeLink>();
  #linkListeners = new Set<(link: NodeLink) => void>();
  #proofs = new WeakMap<IncomingMessage, string>();
  #closing = false;
  #handshakeTimeoutMs: number;

  constructor(options: LinkServerOptions) {
    const { nodeId, secret, logger, handshakeTimeoutMs, tls, ...linkOptions } = options;
    this.nodeId = nodeId;
    this.tls = tls;
    this.#handshakeTimeoutMs = handshakeTimeoutMs ?? 5_000;
    this.options = { ...LINK_DEFAULTS, ...withoutUndefined(linkOptions) };
    this.logger = logger ?? pino({ level: "silent" });
    this.#key = importClusterSecret(secret);
    // A bad secret should fail `listen`, not float as an unhandled rejection.
    this.#key.catch(() => {});
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: this.options.maxFrameBytes,
      perMessageDeflate: false,
      clientTracking: false,
    });
    this.#wss.on("headers", (headers, req) => {
      const proof = this.#proofs.get(req);
      if (proof !== undefined) headers.push(`${NODE_PROOF_HEADER}: ${proof}`);
    });
  }

  /** Start listening (default 127.0.0.1, port 0 = any free port). */
  async listen(
    options: { host?: string; port?: number } = {},
  ): Promise<{ host: string; port: number }> {
    await this.#key;
    const timeout = this.#handshakeTimeoutMs;
    // Node checks these timeouts every `connectionsCheckingInterval` (30 s by default).
    const limits = {
      headersTimeout: timeout,
      requestTimeout: timeout,
      connectionsCheckingInterval: Math.max(100, Math.min(1_000, timeout / 2)),
    };
    const refuse = (_req: IncomingMessage, res: import("node:http").ServerResponse) => {
      // No route here serves anything; a plain request learns only that it is not allowed.
      res.writeHead(401, { connection: "close", "content-length": "0" }).end();
    };
    const http =
      this.tls === undefined
        ? createServer(limits, refuse)
        : createTlsServer({ ...limits, ...tlsServerOptions(this.tls) }, refuse);
    // A peer without a certificate of the cluster's CA never gets as far as a handshake.
    http.on("tlsClientError", (error: NodeJS.ErrnoException, socket) => {
      this.logger.warn(
        { event: "link_tls_refused", code: error.code, remote: socket.remoteAddress },
        "refused a node link: its TLS handshake failed",
      );
    });
    http.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      this.#upgrade(req, socket, head),
    );
    await new Promise<void>((resolve, reject) => {
      http.once("error", reject);
      http.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => {
        http.off("error", reject);
        resolve();
      });
    });
    this.#http = http;
    const address = http.address() as AddressInfo;
    return { host: address.address, port: address.port };
  }

  /** The bound address, once listening. */
  get address(): { host: string; port: number } | undefined {
    const address = this.#http?.address();
    if (address === null || address === undefined || typeof address === "string") return undefined;
    return { host: address.address, port: address.port };
  }

  /** The signing key of this node's credentials (for `LinkPool`). */
  key(): Promise<CryptoKey> {
    return this.#key;
  }

  /** Handle streams peers open, on every link of this node. */
  onStream(handler: StreamHandler): void {
    this.handlers.stream = handler;
  }

  /** Handle requests peers send, on every link of this node. */
  onRequest(handler: RequestHandler): void {
    this.handlers.request = handler;
  }

  /** Called with every link a peer opens to this node. */
  onLink(listener: (link: NodeLink) => void): () => void {
    this.#linkListeners.add(listener);
    return () => this.#linkListeners.delete(listener);
  }

  /** Links peers opened to this node that are still up. */
  links(): NodeLink[] {
    return [...this.#links];
  }

  /** Stop listening and close every accepted link (their streams close 1013). */
  async close(): Promise<void> {
    this.#closing = true;
    for (const link of this.#links) link.close();
    this.#links.clear();
    const http = this.#http;
    if (http === undefined) return;
    await new Promise<void>((resolve) => {
      http.close(() => resolve());
      http.closeAllConnections();
    });
  }

  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on("error", () => socket.destroy());
    this.#admit(req).then(
      (claims) => {
        if (socket.destroyed) return;
        if (this.#closing) {
          socket.destroy();
          return;
        }
        this.#wss.handleUpgrade(req, socket, head, (ws) => {
          this.#proofs.delete(req);
          const link = new NodeLink(ws, {
            peer: claims.from,
            dialer: false,
            handlers: this.handlers,
            options: this.options,
            logger: this.logger,
          });
          this.#links.add(link);
          link.closed.then(() => {
            this.#links.delete(link);
            this.logger.info({ event: "link_closed", peer: link.peer }, "node link closed");
          });
          this.logger.info({ event: "link_open", peer: link.peer }, "node link accepted");
          for (const listener of this.#linkListeners) listener(link);
        });
      },
      (error: unknown) => {
        const reason = error instanceof LinkAuthError ? error.reason : "internal_error";
        if (!(error instanceof LinkAuthError)) {
          this.logger.error({ err: error }, "node link admission failed");
        }
        // The reason goes to this log only (never the credential); the peer gets a bare 401.
        this.logger.warn(
          { event: "link_refused", reason, ip: req.socket.remoteAddress },
          "node link refused",
        );
        rejectUpgrade(socket, 401);
      },
    );
  }

  async #admit(req: IncomingMessage): Promise<LinkClaims> {
    // Cheapest checks first; a browser never reaches the crypto.
    if (this.#closing) throw new LinkAuthError("node_closing");
    if (req.headers.origin !== undefined) throw new LinkAuthError("browser_origin");
    const authorization = req.headers.authorization;
    const match = authorization === undefined ? null : /^Bearer ([^\s]+)$/.exec(authorization);
    if (match === null) throw new LinkAuthError("credential_missing");
    const key = await this.#key;
    const claims = await verifyLinkCredential(key, match[1], this.nodeId);
    this.#spent.spend(claims);
    const proof = await mintLinkCredential(key, this.nodeId, claims.from, claims.jti);
    this.#proofs.set(req, proof.token);
    return claims;
  }
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

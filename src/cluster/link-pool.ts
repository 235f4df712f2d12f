/**
 * The links of one node to its peers: at most one live link per peer, opened on first use,
 * shared by every stream and request to that peer, and reopened on the first use after it
 * dropped. A link a peer opened to this node counts as that peer's link too, so two nodes
 * that talk both ways share one socket (two only when both dial at the same instant; both
 * work). Failed dials back off exponentially; during the back-off `get` fails at once, so an
 * edge node answers its client 1013 instead of piling up dials to a node that is down.
 */
import type { IncomingMessage } from "node:http";
import WebSocket from "ws";
import { mintLinkCredential, verifyLinkCredential } from "./link-auth.js";
import { LinkError } from "./link-errors.js";
import { type LinkServer, NODE_PROOF_HEADER } from "./link-server.js";
import { tlsClientOptions } from "./link-tls.js";
import { NodeLink } from "./node-link.js";

/** How a pool dials. */
export interface LinkPoolOptions {
  /** Time to open a link, handshake included (default 5000 ms). */
  connectTimeoutMs?: number;
  /** Back-off after the first failed dial or a dropped link (default 100 ms). */
  backoffMs?: number;
  /** Longest back-off; it doubles per failed dial up to this (default 5000 ms). */
  maxBackoffMs?: number;
}

const POOL_DEFAULTS: Required<LinkPoolOptions> = {
  connectTimeoutMs: 5_000,
  backoffMs: 100,
  maxBackoffMs: 5_000,
};

interface Peer {
  link?: NodeLink;
  dialing?: Promise<NodeLink>;
  failures: number;
  /** No dial before this time (ms since the epoch). */
  retryAt: number;
  /** The secret mismatch was logged once; it is an operations error, not noise. */
  refusedLogged?: boolean;
}

/**
 * Links from this node (`server`'s identity and handlers) to its peers.
 *
 * @example
 * const pool = new LinkPool(links);
 * const link = await pool.get(owner.id, owner.address); // "10.0.0.7:7001"
 * const reply = await link.request({ agent: "chat", name: "room-1" }, { method: "ping" });
 */
export class LinkPool {
  #server: LinkServer;
  #options: Required<LinkPoolOptions>;
  #peers = new Map<string, Peer>();
  #closed = false;
  #unsubscribe: () => void;

  constructor(server: LinkServer, options: LinkPoolOptions = {}) {
    this.#server = server;
    this.#options = { ...POOL_DEFAULTS, ...options };
    this.#unsubscribe = server.onLink((link) => {
      if (this.#closed) return;
      const peer = this.#peer(link.peer);
      if (peer.link?.isOpen) return;
      this.#adopt(peer, link);
    });
  }

  /**
   * The live link to node `nodeId` at `address` (`host:port` or a `ws://` URL), opened if
   * there is none. Rejects with `LinkError`: `ERR_LINK_UNAVAILABLE` (down, refused,
   * backing off), `ERR_LINK_PEER_MISMATCH` (another node answers at that address).
   */
  get(nodeId: string, address: string): Promise<NodeLink> {
    if (this.#closed) return Promise.reject(new LinkError("ERR_LINK_UNAVAILABLE"));
    const peer = this.#peer(nodeId);
    if (peer.link?.isOpen) return Promise.resolve(peer.link);
    if (peer.dialing !== undefined) return peer.dialing;
    if (Date.now() < peer.retryAt) return Promise.reject(new LinkError("ERR_LINK_UNAVAILABLE"));
    const dialing = this.#dial(nodeId, address).then(
      (link) => {
        peer.dialing = undefined;
        peer.failures = 0;
        peer.retryAt = 0;
        // Closed or forgotten while dialing: nobody may hold a link the pool cannot close.
        if (this.#closed || this.#peers.get(nodeId) !== peer) {
          link.close();
          throw new LinkError("ERR_LINK_UNAVAILABLE");
        }
        this.#adopt(peer, link);
        return link;
      },
      (error: unknown) => {
        peer.dialing = undefined;
        peer.failures += 1;
        peer.retryAt = Date.now() + this.#backoff(peer.failures);
        throw error instanceof LinkError && error.code === "ERR_LINK_PEER_MISMATCH"
          ? error
          : new LinkError("ERR_LINK_UNAVAILABLE", { cause: error });
      },
    );
    peer.dialing = dialing;
    return dialing;
  }

  /** The live link to `nodeId`, if there is one; never dials. */
  peek(nodeId: string): NodeLink | undefined {
    const link = this.#peers.get(nodeId)?.link;
    return link?.isOpen ? link : undefined;
  }

  /** The peer left the cluster: close its link and forget its back-off. */
  forget(nodeId: string): void {
    const peer = this.#peers.get(nodeId);
    this.#peers.delete(nodeId);
    peer?.link?.close();
  }

  /** Close every link this pool holds (their streams close 1013 on both sides). */
  close(): void {
    this.#closed = true;
    this.#unsubscribe();
    for (const peer of this.#peers.values()) peer.link?.close();
    this.#peers.clear();
  }

  #peer(nodeId: string): Peer {
    let peer = this.#peers.get(nodeId);
    if (peer === undefined) {
      peer = { failures: 0, retryAt: 0 };
      this.#peers.set(nodeId, peer);
    }
    return peer;
  }

  #adopt(peer: Peer, link: NodeLink): void {
    peer.link = link;
    link.closed.then(() => {
      if (peer.link !== link) return;
      peer.link = undefined;
      // A dropped link is retried after a short pause, not in a tight loop of dials.
      peer.failures = Math.max(peer.failures, 1);
      peer.retryAt = Date.now() + this.#backoff(1);
    });
  }

  #backoff(failures: number): number {
    const base = Math.min(
      this.#options.maxBackoffMs,
      this.#options.backoffMs * 2 ** (failures - 1),
    );
    // Jitter, so the nodes that lost the same peer do not come back in lockstep.
    return base * (0.5 + Math.random() / 2);
  }

  async #dial(nodeId: string, address: string): Promise<NodeLink> {
    const server = this.#server;
    const key = await server.key();
    const { token, jti } = await mintLinkCredential(key, server.nodeId, nodeId);
    const tls = server.tls;
    const url = address.includes("://")
      ? address
      : `${tls === undefined ? "ws" : "wss"}://${address}`;
    // A node whose links need TLS never falls back to plain TCP for a peer that offers none.
    if (tls !== undefined && !/^(wss|https):/.test(url)) {
      this.#logPlaintextPeer(nodeId);
      throw new LinkError("ERR_LINK_UNAVAILABLE");
    }
    const ws = new WebSocket(url, {
      ...(tls !== undefined && tlsClientOptions(tls)),
      headers: { authorization: `Bearer ${token}` },
      maxPayload: server.options.maxFrameBytes,
      perMessageDeflate: false,
      handshakeTimeout: this.#options.connectTimeoutMs,
      followRedirects: false,
      // Masking protects proxies from script-written bytes in a browser (RFC 6455 §10.3);
      // no browser speaks on a link, and an all-zero key lets `ws` skip a copy per frame.
      generateMask: (mask) => mask.fill(0),
    });
    ws.on("error", () => {});
    const proof = await new Promise<string>((resolve, reject) => {
      let header: string | undefined;
      ws.once("upgrade", (res: IncomingMessage) => {
        const value = res.headers[NODE_PROOF_HEADER];
        header = typeof value === "string" ? value : undefined;
      });
      ws.once("open", () => {
        // Nothing from the peer is handled before it proved who it is.
        ws.pause();
        if (header === undefined) reject(new LinkError("ERR_LINK_PEER_MISMATCH"));
        else resolve(header);
      });
      ws.once("unexpected-response", (_req, res: IncomingMessage) => {
        if (res.statusCode === 401) this.#logRefused(nodeId);
        res.resume();
        ws.terminate();
        reject(new Error(`peer answered HTTP ${res.statusCode}`));
      });
      ws.once("close", () => reject(new Error("peer closed the connection")));
      ws.once("error", (error: NodeJS.ErrnoException) => {
        if (tls !== undefined && isTlsFailure(error)) this.#logOnce(nodeId, tlsRefusal(error));
        reject(error);
      });
    }).catch((error: unknown) => {
      ws.terminate();
      throw error;
    });
    try {
      const claims = await verifyLinkCredential(key, proof, server.nodeId);
      if (claims.from !== nodeId || claims.nonce !== jti)
        throw new LinkError("ERR_LINK_PEER_MISMATCH");
    } catch (error) {
      ws.terminate();
      throw error instanceof LinkError
        ? error
        : new LinkError("ERR_LINK_PEER_MISMATCH", { cause: error });
    }
    const link = new NodeLink(ws, {
      peer: nodeId,
      dialer: true,
      handlers: server.handlers,
      options: server.options,
      logger: server.logger,
    });
    ws.resume();
    if (!link.isOpen) throw new LinkError("ERR_LINK_UNAVAILABLE");
    return link;
  }

  #logRefused(nodeId: string): void {
    this.#logOnce(nodeId, {
      event: "link_refused_by_peer",
      message:
        "peer node refused this node's link credential; do both use the same cluster secret?",
    });
  }

  #logPlaintextPeer(nodeId: string): void {
    this.#logOnce(nodeId, {
      event: "link_tls_mismatch",
      message:
        "peer node advertises a plain ws:// link but this node's links need TLS: give every node cluster.tls",
    });
  }

  /** One error line per peer for a refusal that retrying will not fix. */
  #logOnce(nodeId: string, what: { event: string; message: string; code?: string }): void {
    const peer = this.#peers.get(nodeId);
    if (peer === undefined || peer.refusedLogged) return;
    peer.refusedLogged = true;
    const { message, ...fields } = what;
    this.#server.logger.error({ ...fields, peer: nodeId }, message);
  }
}

/** OpenSSL's verdicts on a peer's certificate, and TLS-level failures. */
function isTlsFailure(error: NodeJS.ErrnoException): boolean {
  const code = error.code ?? "";
  return (
    code.startsWith("ERR_TLS") ||
    code.startsWith("ERR_SSL") ||
    code.includes("CERT") ||
    code === "UNABLE_TO_VERIFY_LEAF_SIGNATURE" ||
    code === "EPROTO"
  );
}

function tlsRefusal(error: NodeJS.ErrnoException): {
  event: string;
  message: string;
  code?: string;
} {
  return {
    event: "link_tls_failed",
    ...(error.code !== undefined && { code: error.code }),
    message:
      error.code === "ERR_TLS_CERT_ALTNAME_INVALID"
        ? "peer node's certificate does not name the address it advertises"
        : "TLS handshake with the peer node failed: are both certificates signed by cluster.tls.ca?",
  };
}

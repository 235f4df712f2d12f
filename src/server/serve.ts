import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { type AgentServer, type AgentServerOptions, createAgentServer } from "./agent-server.js";

/** Options for `serve()`: the server options plus where to listen. */
export interface ServeOptions<Env = unknown> extends Omit<AgentServerOptions<Env>, "server"> {
  /** Port to listen on; 0 picks a free one. Default 8787. */
  port?: number;
  /** Address to listen on. Default `127.0.0.1`. */
  hostname?: string;
  /** Close gracefully on SIGTERM and SIGINT. Default true. */
  handleSignals?: boolean;
  /**
   * Milliseconds a client has to send a complete request head (including a WebSocket
   * upgrade) before its socket is dropped with 408. Default 10 s.
   */
  headersTimeout?: number;
}

/** A listening Outpost server. */
export interface ServeHandle extends AgentServer {
  /** `http://host:port` of the listening server. */
  readonly url: string;
  readonly port: number;
  readonly hostname: string;
}

/**
 * Start an Outpost server on its own `node:http` server.
 *
 * @example
 * const server = await serve({ agents: { Counter }, port: 8787 });
 * console.log(`agents at ${server.url}/agents/counter/<name>`);
 * await server.close();
 */
export async function serve<Env>(options: ServeOptions<Env>): Promise<ServeHandle> {
  const hostname = options.hostname ?? "127.0.0.1";
  const headersTimeout = options.headersTimeout ?? 10_000;
  const timeouts = {
    headersTimeout,
    requestTimeout: Math.max(30_000, headersTimeout),
    // Node checks these timeouts only every 30 s by default, so a stalled handshake could
    // hold its socket for up to 40 s; check often enough that the timeout means what it says.
    connectionsCheckingInterval: Math.min(1_000, headersTimeout),
  };
  const http = createServer(timeouts, (req, res) => {
    outpost.handleRequest(req, res).then(
      (handled) => {
        if (!handled && !res.headersSent) {
          res.writeHead(404, { "content-type": "application/json" });
          res.end('{"error":"not_found"}');
        }
      },
      () => {
        if (!res.headersSent) res.writeHead(500).end();
      },
    );
  });
  const outpost = createAgentServer({ ...options, server: http });
  await new Promise<void>((resolve, reject) => {
    http.once("error", reject);
    http.listen(options.port ?? 8787, hostname, () => {
      http.off("error", reject);
      resolve();
    });
  });
  try {
    // A policy or cluster that cannot be set up is a startup error, not a refusal per client.
    await outpost.ready();
  } catch (error) {
    await outpost.close().catch(() => {});
    await new Promise<void>((resolve) => http.close(() => resolve()));
    throw error;
  }
  const port = (http.address() as AddressInfo).port;
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;

  const onSignal = (signal: NodeJS.Signals) => {
    outpost.logger.info({ signal }, "shutting down");
    handle.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  const handleSignals = options.handleSignals ?? true;
  if (handleSignals) {
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
  }

  let closing: Promise<void> | undefined;
  const handle: ServeHandle = {
    url: `http://${host}:${port}`,
    port,
    hostname,
    logger: outpost.logger,
    handleUpgrade: outpost.handleUpgrade.bind(outpost),
    handleRequest: outpost.handleRequest.bind(outpost),
    routeAgentRequest: outpost.routeAgentRequest.bind(outpost),
    revoke: outpost.revoke.bind(outpost),
    ready: outpost.ready.bind(outpost),
    stats: outpost.stats.bind(outpost),
    close() {
      closing ??= (async () => {
        if (handleSignals) {
          process.off("SIGTERM", onSignal);
          process.off("SIGINT", onSignal);
        }
        const stopped = new Promise<void>((resolve) => http.close(() => resolve()));
        await outpost.close();
        http.closeAllConnections();
        await stopped;
      })();
      return closing;
    },
  };
  outpost.logger.info({ url: handle.url }, "listening");
  return handle;
}

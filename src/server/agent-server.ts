import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import type { ServerConnection } from "../agent/connection.js";
import { InstanceRegistry } from "../agent/registry.js";
import type { AuthPolicy } from "../auth/policy.js";
import type { AuthStateStore } from "../auth/state-store.js";
import { instanceKey } from "../cluster/instance-key.js";
import { clusterStorage } from "../cluster/instance-storage.js";
import type { ClusterNode } from "../cluster/node.js";
import { resolveClusterOptions } from "../cluster/options.js";
import { CloseCode } from "../protocol/close-codes.js";
import { openAuthStateStore } from "../storage/auth-state.js";
import { Admission, type Placement } from "./admission.js";
import { CustomRoutes } from "./custom-routes.js";
import { json } from "./http.js";
import { HttpRoutes } from "./http-routes.js";
import { createLogger } from "./logger.js";
import { type AgentServerOptions, type ResolvedOptions, resolveOptions } from "./options.js";
import { Refusals } from "./refusals.js";
import { RemoteBridge } from "./remote.js";
import { agentUrlNames, Router } from "./router.js";
import { UpgradeHandler } from "./upgrade.js";

export type { AgentServerOptions } from "./options.js";

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
  /**
   * Fetch-style HTTP (for Hono and friends): a `Response`, or `null` when not Outpost's.
   * Pass the client's address so the failed-attempt limit applies per client; without
   * one, no per-address limit applies (rather than one bucket shared by every caller).
   */
  routeAgentRequest(request: Request, remoteAddress?: string): Promise<Response | null>;
  /**
   * Revoke by subject or token id. Live matching connections are closed 4009, and ones
   * still being admitted (their instance starting) are refused 4009; resolves to how many.
   */
  revoke(target: { sub?: string; jti?: string }): Promise<number>;
  /**
   * Resolves once the auth policy and, in cluster mode, this node's place in the cluster are
   * ready; rejects with the reason when either cannot be set up (`serve()` awaits it).
   */
  ready(): Promise<void>;
  /** Instances, connections and refusal counters. */
  stats(): AgentServerStats;
  readonly logger: Logger;
  /** Close every connection with 1001, finish running handlers, close the databases. */
  close(): Promise<void>;
}

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

/** Composes the road: options → registry → admission → the upgrade and HTTP adapters. */
class OutpostServer implements AgentServer {
  readonly logger: Logger;
  readonly #options: ResolvedOptions;
  readonly #registry: InstanceRegistry;
  readonly #admission: Admission;
  readonly #refusals: Refusals;
  readonly #upgrades: UpgradeHandler;
  readonly #http: HttpRoutes;
  readonly #auth: Promise<AuthPolicy | undefined>;
  #policy: AuthPolicy | undefined;
  #authState: AuthStateStore | undefined;
  readonly #connections = new Set<ServerConnection>();
  #closing: Promise<void> | undefined;
  #stopRevocations: (() => void) | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  /** Cluster mode: this process as one node; undefined on a single node. */
  readonly #cluster: Promise<ClusterNode> | undefined;
  readonly #remote: RemoteBridge | undefined;

  constructor(options: AgentServerOptions) {
    this.#options = resolveOptions(options);
    // Checked now, so a bad `cluster` option stops the server before it listens.
    const clusterOptions =
      options.cluster === undefined ? undefined : resolveClusterOptions(options.cluster);
    this.logger = createLogger(options.logger);
    if (clusterOptions !== undefined) {
      // Loaded only in cluster mode: the PostgreSQL client is most of a single node's startup.
      this.#cluster = import("../cluster/node.js").then(({ ClusterNode }) =>
        ClusterNode.start(clusterOptions, this.logger),
      );
      this.#cluster.catch((error) => this.logger.error({ err: error }, "cluster setup failed"));
    }
    const agents = agentUrlNames(options.agents ?? {});
    if (agents.size === 0) throw new Error("serve(): `agents` must name at least one Agent class");
    const router = new Router(this.#options.prefix, agents.keys());
    const custom =
      options.route === undefined
        ? undefined
        : new CustomRoutes(options.route, agents, this.logger);
    this.#auth = Promise.resolve(options.auth).then(async (policy) => {
      // --- Durable auth state: revocations and spent tickets kept in the data directory,
      // loaded before anything is served (every request awaits #auth), closed on shutdown.
      // In cluster mode the state is the cluster's, in PostgreSQL, shared by every node.
      if (policy?.useStateStore !== undefined) {
        let store: AuthStateStore;
        if (this.#cluster !== undefined) store = (await this.#cluster).authState;
        else {
          this.#authState = openAuthStateStore(this.#options.dataDir, this.#options.durability);
          store = this.#authState;
        }
        // biome-ignore lint/correctness/useHookAtTopLevel: an AuthPolicy method, not a React hook
        await policy.useStateStore(store);
      }
      // --- end durable auth state
      // A revocation made elsewhere (another process on a shared store) closes the matching
      // sockets here too, not only at their next frame.
      this.#stopRevocations = policy?.onRevocation?.(() => this.#closeRevoked());
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
      maxInstances: this.#options.maxInstances,
      ...(this.#cluster !== undefined && {
        locate: async (agent: string, name: string) => {
          const placement = await this.#place(agent, name);
          return placement.here ? undefined : this.#remote?.agentOn(placement.owner, agent, name);
        },
        storage: clusterStorage({
          node: this.#cluster,
          durability: this.#options.durability,
          logger: this.logger,
          onFailure: (agent, name, error) => void this.#lost(agent, name, error),
        }),
      }),
    });
    const credentialParams = () => this.#policy?.credentialParams ?? [];
    this.#refusals = new Refusals(this.logger, credentialParams);
    const auth = () => this.#auth;
    this.#admission = new Admission({
      router,
      ...(custom !== undefined && { custom }),
      registry: this.#registry,
      auth,
      closing: () => this.#closing !== undefined,
      maxConnectionsPerInstance: this.#options.maxConnectionsPerInstance,
      report: this.#refusals.record,
      logger: this.logger,
      ...(this.#cluster !== undefined && { place: (agent, name) => this.#place(agent, name) }),
    });
    const limits = {
      maxBufferedBytes: this.#options.maxBufferedBytes,
      maxQueuedFrames: this.#options.maxQueuedFrames,
    };
    if (this.#cluster !== undefined) {
      this.#remote = new RemoteBridge({
        node: this.#cluster,
        registry: this.#registry,
        refusals: this.#refusals,
        connections: this.#connections,
        limits,
        maxConnectionsPerInstance: this.#options.maxConnectionsPerInstance,
        auth,
        credentialParams,
        logger: this.logger,
      });
      this.#cluster
        .then(
          async (node) => {
            await this.#remote?.serve();
            // Due schedules of instances whose owner died are woken here, by one node.
            await node.startWaker(async (agent, name) => {
              this.#registry.release(await this.#registry.get(agent, name));
            });
            node.waker?.on("wakeFailed", ({ instance, error }) =>
              this.logger.warn({ err: error, instance }, "could not wake a due instance"),
            );
            node.ownership.on("lost", ({ instance, reason }) => {
              const slash = instance.indexOf("/");
              void this.#registry.drop(
                instance.slice(0, slash),
                instance.slice(slash + 1),
                CloseCode.TryAgainLater,
                reason === "fenced" ? "node not serving" : "agent moved",
              );
            });
          },
          () => {},
        )
        .catch((error) => this.logger.error({ err: error }, "cluster services failed to start"));
    }
    this.#upgrades = new UpgradeHandler({
      admission: this.#admission,
      refusals: this.#refusals,
      logger: this.logger,
      connections: this.#connections,
      limits,
      ...(this.#remote !== undefined && { remote: this.#remote }),
      maxPayload: this.#options.maxPayload,
      maxUrlLength: this.#options.maxUrlLength,
      trustProxy: this.#options.trustProxy,
      credentialParams,
      rejectWithHttp: () => this.#policy?.rejectWithHttp === true,
    });
    this.#http = new HttpRoutes({
      admission: this.#admission,
      refusals: this.#refusals,
      logger: this.logger,
      prefix: this.#options.prefix,
      maxBodyBytes: this.#options.maxBodyBytes,
      maxUrlLength: this.#options.maxUrlLength,
      trustProxy: this.#options.trustProxy,
      auth,
      ...(this.#remote !== undefined && { remote: this.#remote }),
      ...(custom !== undefined && { custom }),
      health: () =>
        json(this.#closing ? 503 : 200, {
          status: this.#closing ? "shutting_down" : "ok",
          instances: this.#registry.size,
          connections: this.#connections.size,
        }),
    });
    if (this.#options.heartbeatInterval > 0) {
      this.#heartbeat = setInterval(() => {
        let dropped = 0;
        for (const connection of this.#connections) if (!connection.heartbeat()) dropped++;
        dropped += this.#remote?.heartbeat() ?? 0;
        if (dropped > 0)
          this.logger.info({ dropped }, "dropped connections that stopped answering");
      }, this.#options.heartbeatInterval);
      this.#heartbeat.unref();
    }
  }

  /** Resolves once the auth policy (which may be a promise) and the cluster node are ready. */
  async ready(): Promise<void> {
    await Promise.all([this.#auth, this.#cluster]);
  }

  /** Cluster mode: this node owns the instance (claiming it when free), or which node does. */
  async #place(agent: string, name: string): Promise<Placement> {
    const node = await this.#cluster!;
    const claim = await node.place(agent, name);
    return claim.owned ? { here: true } : { here: false, owner: claim.owner };
  }

  /**
   * Cluster mode: an instance's changes cannot be made durable (another node took it, or
   * PostgreSQL is out of reach past the flush timeout). Fail closed: close its connections
   * 1013 (they reconnect and find the owner), evict it, and let the ownership go.
   */
  async #lost(agent: string, name: string, error: unknown): Promise<void> {
    this.logger.warn(
      { err: error, agent, instance: name },
      "instance stopped: changes not durable",
    );
    await this.#registry.drop(agent, name, CloseCode.TryAgainLater, "agent unavailable");
    const node = await this.#cluster;
    await node?.ownership.release(instanceKey(agent, name)).catch(() => {});
  }

  stats(): AgentServerStats {
    return {
      instances: this.#registry.size,
      connections: this.#connections.size,
      refusals: this.#refusals.counts,
    };
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.#upgrades.handle(req, socket, head);
  }

  handleRequest(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    return this.#http.handleRequest(req, res);
  }

  routeAgentRequest(request: Request, remoteAddress?: string): Promise<Response | null> {
    return this.#http.routeAgentRequest(request, remoteAddress);
  }

  async revoke(target: { sub?: string; jti?: string }): Promise<number> {
    const policy = await this.#auth;
    if (policy === undefined) throw new Error("revoke() needs an `auth` policy");
    if (target.sub === undefined && target.jti === undefined) {
      throw new TypeError("revoke() needs a `sub` or a `jti`");
    }
    await policy.revoke(target);
    const closed =
      this.#admission.revokePending((session) => policy.isRevoked(session)) + this.#closeRevoked();
    this.logger.info({ event: "revoked", ...target, closed }, "revoked");
    return closed;
  }

  /** Close every live connection whose credentials are now revoked; returns how many. */
  #closeRevoked(): number {
    let closed = 0;
    for (const connection of this.#connections) {
      if (connection.revoked) {
        connection.close(CloseCode.Revoked, "session revoked");
        closed++;
      }
    }
    return closed;
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    const started = Date.now();
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    this.#stopRevocations?.();
    const instances = [...this.#registry.instances];
    await Promise.all(
      instances.map((instance) =>
        instance.drain(CloseCode.GoingAway, "server shutting down", this.#options.shutdownTimeout),
      ),
    );
    for (const connection of this.#connections)
      connection.close(CloseCode.GoingAway, "server shutting down");
    this.#remote?.closeAll(CloseCode.GoingAway, "server shutting down");
    await this.#registry.close();
    // After the instances: their last changes ship before the node leaves the cluster.
    if (this.#cluster !== undefined) await (await this.#cluster.catch(() => undefined))?.close();
    await this.#authState?.close();
    this.#upgrades.close();
    this.logger.info({ ms: Date.now() - started, instances: instances.length }, "closed");
  }
}

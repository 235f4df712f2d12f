import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import postgres, { type Sql } from "postgres";
import { PostgresAuthStateStore } from "./auth-state.js";
import { instanceKey } from "./instance-key.js";
import { LinkPool } from "./link-pool.js";
import { LinkServer } from "./link-server.js";
import { Membership } from "./membership.js";
import type { NodeLink } from "./node-link.js";
import { advertiseAddress, type ResolvedClusterOptions } from "./options.js";
import { type ClaimResult, type OwnerInfo, Ownership } from "./ownership.js";
import { migrate } from "./schema.js";
import { Waker } from "./waker.js";
import { WakeupWriter } from "./wakeups.js";
import { ChangeStore } from "./wal-store.js";

/**
 * One node of a cluster, composed: its membership (lease and self-fencing), the instances
 * it owns (with their epochs), its link endpoint and the links to its peers, the shared
 * auth state and the durable change log, all on one PostgreSQL database.
 *
 * `start` fails at once, naming the cause, when PostgreSQL cannot be reached.
 */
export class ClusterNode {
  readonly options: ResolvedClusterOptions;
  readonly membership: Membership;
  readonly ownership: Ownership;
  readonly links: LinkServer;
  readonly pool: LinkPool;
  readonly authState: PostgresAuthStateStore;
  readonly changes: ChangeStore;
  /** Writes each owned instance's next due time, fenced by its epoch. */
  readonly wakeups: WakeupWriter;
  /** Wakes due instances whose owner is gone; started by the server (it knows how to wake). */
  waker: Waker | undefined;
  readonly #connect: () => Sql;
  readonly #onFenced = () => this.#replaceClient();

  private constructor(parts: {
    options: ResolvedClusterOptions;
    membership: Membership;
    ownership: Ownership;
    links: LinkServer;
    pool: LinkPool;
    authState: PostgresAuthStateStore;
    changes: ChangeStore;
    connect: () => Sql;
  }) {
    this.options = parts.options;
    this.membership = parts.membership;
    this.ownership = parts.ownership;
    this.links = parts.links;
    this.pool = parts.pool;
    this.authState = parts.authState;
    this.changes = parts.changes;
    this.wakeups = new WakeupWriter(parts.ownership, parts.options.schema);
    this.#connect = parts.connect;
    // The membership and the ownership replace their own clients when the node fences.
    this.membership.on("fenced", this.#onFenced);
  }

  static async start(options: ResolvedClusterOptions, logger: Logger): Promise<ClusterNode> {
    const connect = () =>
      postgres(options.postgres, { max: 4, connect_timeout: 5, onnotice: () => {} });
    const sql = connect();
    const opened: Array<{ close(): unknown }> = [];
    try {
      // Every table, the change log's too, under one lock: nodes may start at the same moment.
      await migrate(sql, options.schema);
      const changes = new ChangeStore(sql, { schema: options.schema });
      const secret = options.secret ?? (await sharedSecret(sql, options.schema));
      const links = new LinkServer({
        nodeId: options.nodeId,
        secret,
        ...(options.tls !== undefined && { tls: options.tls }),
        logger: logger.child({ component: "node-link" }),
      });
      opened.push(links);
      const bound = await links.listen(listenAddress(options.advertise));
      const address = advertiseAddress(options, { hostname: bound.host, port: bound.port });
      const membership = await Membership.start({ ...options, address });
      opened.push(membership);
      const ownership = new Ownership(options, membership);
      opened.push(ownership);
      const authState = await PostgresAuthStateStore.open(options);
      opened.push(authState);
      const pool = new LinkPool(links);
      logger.info(
        { event: "cluster_joined", node: options.nodeId, address, schema: options.schema },
        "joined the cluster",
      );
      return new ClusterNode({
        options,
        membership,
        ownership,
        links,
        pool,
        authState,
        changes,
        connect,
      });
    } catch (error) {
      for (const part of opened.reverse()) await Promise.resolve(part.close()).catch(() => {});
      await sql.end({ timeout: 1 }).catch(() => {});
      throw error;
    }
  }

  get nodeId(): string {
    return this.options.nodeId;
  }

  /** Own `agent/name` (claiming it if it is free), or learn which node does. */
  place(agent: string, name: string): Promise<ClaimResult> {
    return this.ownership.claim(instanceKey(agent, name));
  }

  /** The link to the node that owns an instance. */
  link(owner: OwnerInfo): Promise<NodeLink> {
    return this.pool.get(owner.nodeId, owner.address);
  }

  /** Start waking due instances whose owner is gone, with `wake` (start it, run what is due). */
  async startWaker(wake: (agent: string, name: string) => Promise<void>): Promise<void> {
    this.waker = await Waker.start(this.options, this.membership, this.ownership, wake);
  }

  /** Leave the cluster: links closed, lease given up, connections to PostgreSQL ended. */
  async close(): Promise<void> {
    this.membership.off("fenced", this.#onFenced);
    this.wakeups.close();
    await this.waker?.close().catch(() => {});
    this.pool.close();
    await Promise.allSettled([this.links.close()]);
    await Promise.allSettled([this.ownership.close(), this.authState.close()]);
    await this.membership.close().catch(() => {});
    await this.changes.sql.end({ timeout: 2 }).catch(() => {});
  }

  /**
   * A node that fenced itself may be cut off by a silent partition, whose connections hang
   * without ever failing: appends and restores would queue behind them forever, also once
   * PostgreSQL is reachable again. Their answers no longer matter (nothing unanswered was
   * acknowledged), so later queries get a fresh client and the old one is ended.
   */
  #replaceClient(): void {
    const old = this.changes.replaceClient(this.#connect());
    old.end({ timeout: 0 }).catch(() => {});
  }
}

/** Where the link endpoint listens: the advertised port on every interface, else loopback. */
function listenAddress(advertise: string | undefined): { host: string; port: number } {
  if (advertise === undefined) return { host: "127.0.0.1", port: 0 };
  const url = new URL(advertise);
  const port = Number(url.port);
  if (!Number.isInteger(port) || port <= 0) {
    throw new Error("cluster.advertise needs an explicit port, e.g. ws://10.0.0.5:7001");
  }
  return { host: "0.0.0.0", port };
}

/**
 * The link secret every node of the cluster shares: made once by the first node (32 random
 * bytes) and kept in the cluster schema, so whoever can reach the database is a node.
 */
async function sharedSecret(sql: Sql, schema: string): Promise<string> {
  await sql`
    INSERT INTO ${sql(schema)}.cluster_secret (id, secret)
    VALUES (1, ${randomBytes(32).toString("base64url")})
    ON CONFLICT (id) DO NOTHING`;
  const [row] = await sql<{ secret: string }[]>`
    SELECT secret FROM ${sql(schema)}.cluster_secret WHERE id = 1`;
  return row!.secret;
}

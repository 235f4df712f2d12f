import { EventEmitter } from "node:events";
import { performance } from "node:perf_hooks";
import postgres, { type Sql } from "postgres";
import { ClusterError, NotServingError } from "./errors.js";
import type { ResolvedClusterOptions } from "./options.js";
import { TimeoutError, withTimeout } from "./timeout.js";

/** A node whose lease had not expired, by Postgres's clock, at the last heartbeat. */
export interface NodeInfo {
  readonly id: string;
  /** The address its peers use to reach it (`cluster.advertise`). */
  readonly address: string;
}

/** Events of a `Membership`. */
export interface MembershipEvents {
  /** This node may serve: first registration, and again after it had stopped. */
  serving: [];
  /**
   * This node stopped serving: its lease could not be renewed in time, so another node may
   * soon claim its instances. Close their sockets (1013) and refuse writes until `serving`.
   */
  fenced: [{ reason: string }];
  /** A renewal succeeded; `liveNodes()` is fresh. */
  renewed: [];
  /** A renewal failed (Postgres unreachable, or too slow); the node serves on until its deadline. */
  renewalFailed: [unknown];
}

/** What `Membership.start()` needs. */
export type MembershipOptions = Pick<
  ResolvedClusterOptions,
  "postgres" | "schema" | "nodeId" | "leaseMs" | "heartbeatMs" | "fenceMarginMs"
> & {
  /** The address peers use to reach this node (see `advertiseAddress()`). */
  address: string;
};

/**
 * This node's membership of the cluster: its row in `nodes`, a heartbeat that renews its
 * lease (`lease_expires_at = now() + lease`, by Postgres's clock), the list of live nodes,
 * and self-fencing.
 *
 * Self-fencing: a lease renewed by a statement *sent* at monotonic time t lasts at least
 * until t + lease (Postgres stamped it later than t), so this node serves only until
 * t + lease - fenceMargin of its last successful renewal. Past that it emits `fenced`
 * without waiting for Postgres to answer — it cannot know whether it still owns anything.
 * When a renewal succeeds again it emits `serving` and carries on by itself.
 *
 * The heartbeat has its own connection so that it never queues behind heavy writes.
 */
export class Membership extends EventEmitter<MembershipEvents> {
  readonly nodeId: string;
  readonly address: string;
  readonly #options: MembershipOptions;
  #sql: Sql;
  /** Monotonic time (performance.now()) until which this node may serve. */
  #deadline = 0;
  #serving = false;
  #closed = false;
  #nodes: readonly NodeInfo[] = [];
  #beatTimer: NodeJS.Timeout | undefined;
  #fenceTimer: NodeJS.Timeout | undefined;

  private constructor(options: MembershipOptions) {
    super();
    this.#options = options;
    this.nodeId = options.nodeId;
    this.address = options.address;
    this.#sql = connect(options);
  }

  /**
   * Register this node and start its heartbeat. Rejects with `ERR_CLUSTER_UNREACHABLE` when
   * the first registration fails (Postgres unreachable at startup is a startup error, not
   * something to wait out).
   */
  static async start(options: MembershipOptions): Promise<Membership> {
    const membership = new Membership(options);
    try {
      await membership.#beat(true);
    } catch (error) {
      await membership.close();
      // The driver's message names host and port, never the password.
      const why = error instanceof Error ? error.message : String(error);
      throw new ClusterError(
        "ERR_CLUSTER_UNREACHABLE",
        `could not register this node in Postgres (cluster.postgres): ${why}`,
        { cause: error },
      );
    }
    // Rows of nodes gone for a day are of no use to anyone (owner rows may keep naming
    // them: a claim only asks whether a live node owns the instance).
    const sql = membership.#sql;
    await sql`
      DELETE FROM ${sql(options.schema)}.nodes WHERE lease_expires_at < now() - interval '1 day'`.catch(
      () => {},
    );
    return membership;
  }

  /** True while this node's lease is known to hold; checked against the clock on every call. */
  get serving(): boolean {
    return this.#serving && !this.#closed && performance.now() < this.#deadline;
  }

  /** Throw `NotServingError` unless `serving`. */
  assertServing(): void {
    if (this.serving) return;
    this.#checkDeadline();
    throw new NotServingError();
  }

  /** Milliseconds of service left before this node fences itself without a renewal. */
  get remainingMs(): number {
    return this.serving ? this.#deadline - performance.now() : 0;
  }

  /** Nodes live at the last renewal (this one included). */
  liveNodes(): readonly NodeInfo[] {
    return this.#nodes;
  }

  /** Stop the heartbeat and give up the lease at once, so other nodes may claim right away. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#beatTimer);
    clearTimeout(this.#fenceTimer);
    const wasServing = this.#serving;
    this.#serving = false;
    if (wasServing) this.emit("fenced", { reason: "closed" });
    const schema = this.#options.schema;
    const sql = this.#sql;
    try {
      await withTimeout(
        sql`UPDATE ${sql(schema)}.nodes SET lease_expires_at = now() WHERE id = ${this.nodeId}`,
        this.#options.heartbeatMs,
        "giving up the lease",
      );
    } catch {
      // Unreachable Postgres: the lease simply runs out.
    }
    await sql.end({ timeout: 0 });
  }

  async #beat(first = false): Promise<void> {
    this.#checkDeadline();
    const sentAt = performance.now();
    const { schema, leaseMs, fenceMarginMs, heartbeatMs } = this.#options;
    const sql = this.#sql;
    const renewal = sql`
      INSERT INTO ${sql(schema)}.nodes (id, address, heartbeat_at, lease_expires_at)
      VALUES (${this.nodeId}, ${this.address}, now(), now() + ${leaseMs} * interval '1 millisecond')
      ON CONFLICT (id) DO UPDATE SET
        address = excluded.address,
        heartbeat_at = excluded.heartbeat_at,
        lease_expires_at = excluded.lease_expires_at`;
    const live = sql<NodeInfo[]>`
      SELECT id, address FROM ${sql(schema)}.nodes WHERE lease_expires_at >= now() ORDER BY id`;
    try {
      // A renewal slower than the time a lease vouches for cannot help: give up on the
      // connection (it may hang on a dead route) and start afresh on the next beat.
      const [, nodes] = await withTimeout(
        Promise.all([renewal, live]),
        leaseMs - fenceMarginMs,
        "lease renewal",
      );
      if (this.#closed) return;
      this.#nodes = nodes.map(({ id, address }) => ({ id, address }));
      // Woken from a pause with an answer in hand: the old deadline passed meanwhile, so
      // whatever was held is given up before the renewal counts.
      this.#checkDeadline();
      this.#deadline = sentAt + leaseMs - fenceMarginMs;
      // A renewal that took longer than the lease vouches for proves nothing.
      if (performance.now() >= this.#deadline) throw new TimeoutError("lease renewal too slow");
      this.#armFence();
      if (!this.#serving) {
        this.#serving = true;
        this.emit("serving");
      }
      this.emit("renewed");
    } catch (error) {
      if (first) throw error;
      if (error instanceof TimeoutError) this.#recycle();
      if (!this.#closed) this.emit("renewalFailed", error);
    } finally {
      if (!this.#closed && !(first && !this.#serving)) {
        const wait = Math.max(0, heartbeatMs - (performance.now() - sentAt));
        this.#beatTimer = setTimeout(() => void this.#beat(), wait).unref();
      }
    }
  }

  #armFence(): void {
    clearTimeout(this.#fenceTimer);
    const wait = Math.max(0, this.#deadline - performance.now());
    this.#fenceTimer = setTimeout(() => this.#checkDeadline(), wait + 1).unref();
  }

  /** Fence now if the deadline has passed (a paused process learns it here, on waking). */
  #checkDeadline(): void {
    if (!this.#serving || this.#closed || performance.now() < this.#deadline) return;
    this.#serving = false;
    this.emit("fenced", { reason: "lease not renewed in time" });
  }

  #recycle(): void {
    const old = this.#sql;
    this.#sql = connect(this.#options);
    old.end({ timeout: 0 }).catch(() => {});
  }
}

function connect(options: MembershipOptions): Sql {
  const connectSeconds = Math.max(1, Math.ceil(options.heartbeatMs / 1000));
  return postgres(options.postgres, {
    max: 1,
    connect_timeout: connectSeconds,
    idle_timeout: 0,
    onnotice: () => {},
  });
}

import { EventEmitter } from "node:events";
import postgres, { type Sql, type TransactionSql } from "postgres";
import { FencedError, NotOwnerError, NotServingError } from "./errors.js";
import { fencedWrite } from "./fencing.js";
import type { Membership } from "./membership.js";
import type { ResolvedClusterOptions } from "./options.js";

/** What `claim()` found: this node owns the instance now, or which node does. */
export type ClaimResult =
  | { readonly owned: true; readonly epoch: number }
  | { readonly owned: false; readonly owner: OwnerInfo };

/** The live owner of an instance, and where to reach it. */
export interface OwnerInfo {
  readonly nodeId: string;
  readonly address: string;
  readonly epoch: number;
}

/** What an `Ownership` needs: where Postgres is and the cluster schema. */
export type OwnershipOptions = Pick<ResolvedClusterOptions, "postgres" | "schema">;

/** Why this node stopped owning an instance it held. */
export type LostReason =
  /** This node fenced itself (its lease could not be renewed in time). */
  | "fenced"
  /** Postgres shows another owner or epoch: another node claimed it meanwhile. */
  | "taken";

/** Events of an `Ownership`. */
export interface OwnershipEvents {
  /** Stop serving `instance` now: close its sockets (1013) and drop its local state. */
  lost: [{ instance: string; epoch: number; reason: LostReason }];
}

/**
 * Which agent instances this node owns, with the epoch (fencing token) of each.
 *
 * A claim follows the cluster's one rule, decided inside Postgres by its clock: an
 * instance may be claimed when it has no owner row, when the row is this node's, or when
 * the owner's lease has expired; every claim adds one to the epoch, which never goes down
 * (a released instance keeps its row). Every durable write goes through `write()`, which
 * checks the epoch in the same transaction (`fencedWrite`).
 *
 * Instances held here are dropped, with a `lost` event, when the node fences itself, when a
 * fenced write finds a newer epoch, and when a renewal shows a row that is no longer ours.
 *
 * It has a client of its own, replaced whenever the node fences itself: the connections of
 * a node cut off from Postgres may hang without ever failing, and every query still on them
 * is moot by then (a write that was not answered was not acknowledged).
 */
export class Ownership extends EventEmitter<OwnershipEvents> {
  #sql: Sql;
  readonly #options: OwnershipOptions;
  readonly #schema: string;
  readonly #membership: Membership;
  /** instance → epoch and the check generation it was claimed in. */
  readonly #held = new Map<string, { epoch: number; generation: number }>();
  readonly #claiming = new Map<string, Promise<ClaimResult>>();
  #generation = 0;
  #verifying = false;
  readonly #onFenced = () => {
    this.#dropAll("fenced");
    this.#recycle();
  };
  readonly #onRenewed = () => void this.#verify().catch(() => {});

  constructor(options: OwnershipOptions, membership: Membership) {
    super();
    this.#options = options;
    this.#sql = connect(options);
    this.#schema = options.schema;
    this.#membership = membership;
    membership.on("fenced", this.#onFenced);
    membership.on("renewed", this.#onRenewed);
  }

  /** The epoch under which this node serves `instance`, or undefined when it does not. */
  epochOf(instance: string): number | undefined {
    return this.#membership.serving ? this.#held.get(instance)?.epoch : undefined;
  }

  /** Instances held now, with their epochs. */
  held(): ReadonlyMap<string, number> {
    return new Map([...this.#held].map(([instance, { epoch }]) => [instance, epoch]));
  }

  /**
   * Claim `instance` (`"<kebab-agent>/<name>"`) for this node, or learn which live node owns
   * it and at what address, to route there. Concurrent claims of one instance on this node
   * share one round trip. Rejects with `NotServingError` when this node is not serving.
   */
  claim(instance: string): Promise<ClaimResult> {
    if (!this.#membership.serving) return Promise.reject(new NotServingError());
    const epoch = this.#held.get(instance)?.epoch;
    if (epoch !== undefined) return Promise.resolve({ owned: true, epoch });
    let pending = this.#claiming.get(instance);
    if (pending === undefined) {
      pending = this.#claim(instance).finally(() => this.#claiming.delete(instance));
      this.#claiming.set(instance, pending);
    }
    return pending;
  }

  /** The live owner of `instance`, or undefined when it is free (or its owner's lease expired). */
  async ownerOf(instance: string): Promise<OwnerInfo | undefined> {
    const sql = this.#sql;
    const rows = await sql<{ node_id: string; address: string; epoch: string }[]>`
      SELECT o.node_id, n.address, o.epoch FROM ${sql(this.#schema)}.owners o
      JOIN ${sql(this.#schema)}.nodes n ON n.id = o.node_id AND n.lease_expires_at >= now()
      WHERE o.instance = ${instance}`;
    const row = rows[0];
    return row && { nodeId: row.node_id, address: row.address, epoch: Number(row.epoch) };
  }

  /**
   * Give `instance` up (on eviction): this node stops serving it at once, and its row is
   * marked free so that any node may claim it without waiting for this node's lease.
   */
  async release(instance: string): Promise<void> {
    const held = this.#held.get(instance);
    if (held === undefined) return;
    this.#held.delete(instance);
    const sql = this.#sql;
    // The row stays (with no node) so that the next claim still counts the epoch up.
    await sql`
      UPDATE ${sql(this.#schema)}.owners SET node_id = ''
      WHERE instance = ${instance} AND node_id = ${this.#membership.nodeId} AND epoch = ${held.epoch}`;
  }

  /**
   * Run `write` in a transaction fenced by this node's epoch for `instance`. Refused before
   * Postgres is asked when this node is not serving or does not hold the instance; a
   * `FencedError` from Postgres also drops the instance here (`lost`, reason `taken`).
   */
  async write<T>(instance: string, write: (tx: TransactionSql) => Promise<T>): Promise<T> {
    this.#membership.assertServing();
    const held = this.#held.get(instance);
    if (held === undefined) throw new NotOwnerError(instance);
    try {
      return await fencedWrite(this.#sql, this.#schema, instance, held.epoch, write);
    } catch (error) {
      if (error instanceof FencedError) this.#drop(instance, held.epoch, "taken");
      throw error;
    }
  }

  /** Stop following the membership and close the client. Instances held are forgotten without events. */
  async close(): Promise<void> {
    this.#membership.off("fenced", this.#onFenced);
    this.#membership.off("renewed", this.#onRenewed);
    this.#held.clear();
    await this.#sql.end({ timeout: 1 });
  }

  async #claim(instance: string): Promise<ClaimResult> {
    const sql = this.#sql;
    const schema = this.#schema;
    const me = this.#membership.nodeId;
    // Two tries: the owner seen after a refused claim may have expired in between.
    for (let attempt = 0; attempt < 2; attempt++) {
      const claimed = await sql<{ epoch: string }[]>`
        INSERT INTO ${sql(schema)}.owners AS o (instance, node_id, epoch)
        SELECT ${instance}, ${me}, 1
        WHERE EXISTS (
          SELECT 1 FROM ${sql(schema)}.nodes WHERE id = ${me} AND lease_expires_at >= now())
        ON CONFLICT (instance) DO UPDATE SET node_id = excluded.node_id, epoch = o.epoch + 1
        WHERE o.node_id = excluded.node_id OR NOT EXISTS (
          SELECT 1 FROM ${sql(schema)}.nodes n
          WHERE n.id = o.node_id AND n.lease_expires_at >= now())
        RETURNING epoch`;
      const row = claimed[0];
      if (row !== undefined) {
        const epoch = Number(row.epoch);
        // The deadline may have passed while the claim was on its way: the row is ours in
        // Postgres, but this node cannot vouch for it, so it serves nothing.
        if (!this.#membership.serving) throw new NotServingError();
        // Recorded with the generation at completion: a check sent before now sees this row.
        this.#held.set(instance, { epoch, generation: this.#generation });
        return { owned: true, epoch };
      }
      const owner = await this.ownerOf(instance);
      if (owner !== undefined && owner.nodeId !== me) return { owned: false, owner };
    }
    // Free, yet not claimable by us: Postgres holds our own lease for expired.
    throw new NotServingError();
  }

  /** Drop held instances whose row in Postgres is no longer ours at that epoch. */
  async #verify(): Promise<void> {
    if (this.#verifying || this.#held.size === 0) return;
    this.#verifying = true;
    const generation = ++this.#generation;
    try {
      const sql = this.#sql;
      const rows = await sql<{ instance: string; epoch: string }[]>`
        SELECT instance, epoch FROM ${sql(this.#schema)}.owners
        WHERE node_id = ${this.#membership.nodeId}`;
      const ours = new Map(rows.map((row) => [row.instance, Number(row.epoch)]));
      for (const [instance, held] of this.#held) {
        // A claim that finished after this query was sent may not be in its snapshot.
        if (held.generation >= generation) continue;
        if (ours.get(instance) !== held.epoch) this.#drop(instance, held.epoch, "taken");
      }
    } finally {
      this.#verifying = false;
    }
  }

  #drop(instance: string, epoch: number, reason: LostReason): void {
    if (this.#held.get(instance)?.epoch !== epoch) return;
    this.#held.delete(instance);
    this.emit("lost", { instance, epoch, reason });
  }

  #recycle(): void {
    const old = this.#sql;
    this.#sql = connect(this.#options);
    old.end({ timeout: 0 }).catch(() => {});
  }

  #dropAll(reason: LostReason): void {
    for (const [instance, { epoch }] of [...this.#held]) this.#drop(instance, epoch, reason);
  }
}

function connect(options: OwnershipOptions): Sql {
  return postgres(options.postgres, { max: 4, connect_timeout: 5, onnotice: () => {} });
}

/**
 * Errors of the cluster layer, one stable code per reason. Callers and tests match on
 * `code`, never on message text; no message carries a connection string or a password.
 */

/** Why a cluster operation was refused. */
export type ClusterErrorCode =
  /** A `cluster` option is missing or invalid; `option` names it. */
  | "ERR_CLUSTER_OPTION"
  /** A durable write's epoch is no longer the instance's: another node owns it now. */
  | "ERR_CLUSTER_FENCED"
  /** This node cannot vouch for its lease (Postgres unreachable, or paused): it serves nothing. */
  | "ERR_CLUSTER_NOT_SERVING"
  /** This node does not own the instance (never claimed it, released it, or lost it). */
  | "ERR_CLUSTER_NOT_OWNER"
  /** Postgres could not be reached at startup; `cause` says why. */
  | "ERR_CLUSTER_UNREACHABLE"
  /** Changes a flush covered are not known to be durable; acknowledge nothing. */
  | "ERR_CLUSTER_NOT_DURABLE";

/** Base class of every cluster error. */
export class ClusterError extends Error {
  readonly code: ClusterErrorCode;

  constructor(code: ClusterErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A `cluster` option is missing or invalid; thrown at startup, before anything connects. */
export class ClusterOptionError extends ClusterError {
  /** The option's path, e.g. `cluster.postgres`. */
  readonly option: string;

  constructor(option: string, problem: string) {
    super("ERR_CLUSTER_OPTION", `${option} ${problem}`);
    this.option = option;
  }
}

/**
 * A fenced write found another epoch than the writer's: the instance was claimed by another
 * node (or never claimed). The transaction was rolled back; nothing of it is durable.
 */
export class FencedError extends ClusterError {
  readonly instance: string;
  /** The epoch the writer held. */
  readonly epoch: number;
  /** The instance's epoch in Postgres, or undefined when it has no owner row. */
  readonly currentEpoch: number | undefined;

  constructor(instance: string, epochHeld: number | bigint, current: number | bigint | undefined) {
    const epoch = Number(epochHeld);
    const currentEpoch = current === undefined ? undefined : Number(current);
    super(
      "ERR_CLUSTER_FENCED",
      `write to ${instance} refused: epoch ${epoch} is not the owner's (${currentEpoch ?? "none"})`,
    );
    this.instance = instance;
    this.epoch = epoch;
    this.currentEpoch = currentEpoch;
  }
}

/** This node has stopped serving (its lease could not be renewed in time), or was closed. */
export class NotServingError extends ClusterError {
  constructor(message = "this node is not serving: its cluster lease is not renewed") {
    super("ERR_CLUSTER_NOT_SERVING", message);
  }
}

/** This node does not own the instance it was asked to act for. */
export class NotOwnerError extends ClusterError {
  readonly instance: string;

  constructor(instance: string) {
    super("ERR_CLUSTER_NOT_OWNER", `this node does not own ${instance}`);
    this.instance = instance;
  }
}

/** Why a flush did not make its changes durable. */
export type NotDurableReason = "unavailable" | "timeout" | "closed";

/**
 * The changes a flush covered are not known to be durable: PostgreSQL could not be reached
 * or refused the write (`unavailable`, with the driver's error as `cause`), did not answer
 * in time (`timeout`), or the shipper was closed (`closed`). Nothing may be acknowledged; the
 * shipper keeps the changes and goes on trying by itself (except after `closed`).
 */
export class NotDurableError extends ClusterError {
  readonly reason: NotDurableReason;

  constructor(reason: NotDurableReason, cause?: unknown) {
    super(
      "ERR_CLUSTER_NOT_DURABLE",
      reason === "closed"
        ? "the change shipper was closed before these changes were durable"
        : reason === "timeout"
          ? "PostgreSQL did not confirm these changes in time"
          : "PostgreSQL did not commit these changes; they are not durable yet",
      cause === undefined ? undefined : { cause },
    );
    this.reason = reason;
  }
}

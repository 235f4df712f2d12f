/** Stable codes of the errors change shipping rejects with; match on these, never on text. */
export type ShippingErrorCode = "ERR_OUTPOST_FENCED" | "ERR_OUTPOST_NOT_DURABLE";

/**
 * A durable write was refused inside PostgreSQL because another node has claimed the
 * instance since (its epoch in `owners` is no longer the writer's). Final: the writer must
 * stop serving the instance; retrying cannot succeed.
 */
export class FencedError extends Error {
  readonly code = "ERR_OUTPOST_FENCED" satisfies ShippingErrorCode;
  override readonly name = "FencedError";
  readonly instance: string;
  /** The epoch the writer held. */
  readonly epoch: bigint;
  /** The epoch in `owners` when the write was refused; `undefined` when there was no row. */
  readonly currentEpoch: bigint | undefined;

  constructor(instance: string, epoch: bigint, currentEpoch: bigint | undefined) {
    super(
      currentEpoch === undefined
        ? `${instance} has no owner row; epoch ${epoch} may not write`
        : `${instance} is owned at epoch ${currentEpoch}; epoch ${epoch} may not write`,
    );
    this.instance = instance;
    this.epoch = epoch;
    this.currentEpoch = currentEpoch;
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
export class NotDurableError extends Error {
  readonly code = "ERR_OUTPOST_NOT_DURABLE" satisfies ShippingErrorCode;
  override readonly name = "NotDurableError";
  readonly reason: NotDurableReason;

  constructor(reason: NotDurableReason, cause?: unknown) {
    super(
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

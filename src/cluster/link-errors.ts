/**
 * Why a node link operation failed. Stable codes: callers and tests match on these, never on
 * message text. None of them carries anything from the peer but the code.
 */
export type LinkErrorCode =
  /** The link ended (peer died, network cut, link closed) while the call was in flight. */
  | "link_closed"
  /** No link to the peer could be opened now (refused, unreachable, or backing off). */
  | "link_unavailable"
  /** The peer at that address is not the node that was asked for. */
  | "peer_mismatch"
  /** The peer's handler threw or returned nothing usable; its log has the cause. */
  | "request_failed"
  /** No reply within the request's timeout. */
  | "request_timeout"
  /** The peer has no handler for requests (or streams) yet. */
  | "no_handler"
  /** The frame would exceed the link's `maxFrameBytes`. */
  | "frame_too_large";

const MESSAGES: Record<LinkErrorCode, string> = {
  link_closed: "node link closed",
  link_unavailable: "node link unavailable",
  peer_mismatch: "peer is not the expected node",
  request_failed: "request failed on the peer node",
  request_timeout: "request to the peer node timed out",
  no_handler: "peer node has no handler",
  frame_too_large: "frame too large for the node link",
};

/**
 * The one error type of node links.
 *
 * @example
 * try { await link.request(target, payload); }
 * catch (error) { if (error instanceof LinkError && error.code === "link_closed") retry(); }
 */
export class LinkError extends Error {
  override readonly name = "LinkError";
  readonly code: LinkErrorCode;

  constructor(code: LinkErrorCode, options?: { cause?: unknown }) {
    super(MESSAGES[code], options);
    this.code = code;
  }
}

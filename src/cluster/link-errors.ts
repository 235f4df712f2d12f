/**
 * Why a node link operation failed. Stable codes: callers and tests match on these, never on
 * message text. None of them carries anything from the peer but the code.
 */
export type LinkErrorCode =
  /** The link ended (peer died, network cut, link closed) while the call was in flight. */
  | "ERR_LINK_CLOSED"
  /** No link to the peer could be opened now (refused, unreachable, or backing off). */
  | "ERR_LINK_UNAVAILABLE"
  /** The peer at that address is not the node that was asked for. */
  | "ERR_LINK_PEER_MISMATCH"
  /** The peer's handler threw or returned nothing usable; its log has the cause. */
  | "ERR_LINK_REQUEST_FAILED"
  /** No reply within the request's timeout. */
  | "ERR_LINK_REQUEST_TIMEOUT"
  /** The peer has no handler for requests (or streams) yet. */
  | "ERR_LINK_NO_HANDLER"
  /** The frame would exceed the link's `maxFrameBytes`. */
  | "ERR_LINK_FRAME_TOO_LARGE";

const MESSAGES: Record<LinkErrorCode, string> = {
  ERR_LINK_CLOSED: "node link closed",
  ERR_LINK_UNAVAILABLE: "node link unavailable",
  ERR_LINK_PEER_MISMATCH: "peer is not the expected node",
  ERR_LINK_REQUEST_FAILED: "request failed on the peer node",
  ERR_LINK_REQUEST_TIMEOUT: "request to the peer node timed out",
  ERR_LINK_NO_HANDLER: "peer node has no handler",
  ERR_LINK_FRAME_TOO_LARGE: "frame too large for the node link",
};

/**
 * The one error type of node links.
 *
 * @example
 * try { await link.request(target, payload); }
 * catch (error) { if (error instanceof LinkError && error.code === "ERR_LINK_CLOSED") retry(); }
 */
export class LinkError extends Error {
  override readonly name = "LinkError";
  readonly code: LinkErrorCode;

  constructor(code: LinkErrorCode, options?: { cause?: unknown }) {
    super(MESSAGES[code], options);
    this.code = code;
  }
}

/**
 * What a node link is configured with and what its handlers see: options with their
 * defaults in one literal, requests and replies, the handler types. No I/O here.
 */
import type { LinkTarget } from "./link-frames.js";
import type { LinkStream, LinkStreamInfo } from "./link-stream.js";

/** Limits and timings of a link. Both nodes of a cluster should use the same. */
export interface NodeLinkOptions {
  /** Per-stream receive window in bytes (default 262144, 256 KiB). */
  window?: number;
  /** Per-stream send queue beyond the credit before the stream closes 1013 (default 1 MiB). */
  maxBufferedBytes?: number;
  /** Largest frame either way, the `ws` `maxPayload` (default 8 MiB). */
  maxFrameBytes?: number;
  /** Socket `bufferedAmount` above which stream data waits in its queue (default 1 MiB). */
  highWaterBytes?: number;
  /** Time a request waits for its reply (default 30000 ms). */
  requestTimeoutMs?: number;
  /** Ping interval; a link silent for two intervals is dead (default 2000 ms). */
  heartbeatMs?: number;
  /** Streams open at once on one link; more are refused 1013 (default 100000). */
  maxStreams?: number;
}

/** Every default in one place. */
export const LINK_DEFAULTS: Required<NodeLinkOptions> = {
  window: 256 * 1024,
  maxBufferedBytes: 1024 * 1024,
  maxFrameBytes: 8 * 1024 * 1024,
  highWaterBytes: 1024 * 1024,
  requestTimeoutMs: 30_000,
  heartbeatMs: 2_000,
  maxStreams: 100_000,
};

/** A request from a peer, as the handler sees it. */
export interface LinkRequest {
  target: LinkTarget;
  /** Any JSON value. */
  payload: unknown;
  /** Raw bytes that came with the request (e.g. an HTTP body). */
  body?: Buffer;
  /** Node id of the peer that sent it. */
  peer: string;
}

/** A reply: any JSON value, plus bytes if there are any. */
export interface LinkReply {
  payload: unknown;
  body?: Uint8Array;
}

export type StreamHandler = (stream: LinkStream, info: LinkStreamInfo) => void | Promise<void>;
export type RequestHandler = (request: LinkRequest) => LinkReply | Promise<LinkReply>;

/** Handlers shared by every link of a node, so a handler set later reaches existing links. */
export interface LinkHandlers {
  stream?: StreamHandler;
  request?: RequestHandler;
}

/**
 * One authenticated WebSocket between two nodes, multiplexing every stream and request
 * between them. Either side may open streams and send requests: the dialing side numbers
 * its streams odd, the accepting side even, so ids never collide. Stream data waits in its
 * stream's queue while the stream lacks credit or the socket is over its high-water mark,
 * and queued streams are served round robin, so one slow stream never stalls the others.
 */
import type { Logger } from "pino";
import { pino } from "pino";
import type WebSocket from "ws";
import { CloseCode } from "../protocol/close-codes.js";
import { LinkError } from "./link-errors.js";
import {
  decodeFrame,
  encodeCredit,
  encodeFail,
  encodeMessage,
  encodeOpen,
  HEADER_BYTES,
  type LinkFrame,
  LinkFrameType,
  LinkProtocolError,
  type LinkTarget,
  nextId,
} from "./link-frames.js";
import {
  LINK_DEFAULTS,
  type LinkHandlers,
  type LinkReply,
  type LinkRequest,
  type NodeLinkOptions,
  type RequestHandler,
  type StreamHandler,
} from "./link-options.js";
import { PendingRequests } from "./link-requests.js";
import {
  LinkStream,
  type LinkStreamInfo,
  type LinkStreamMeta,
  type StreamHost,
} from "./link-stream.js";

const OPEN = 1;

/** A live link to one peer node. Made by `LinkServer` (accepted) and `LinkPool` (dialed). */
export class NodeLink {
  /** Node id of the other end. */
  readonly peer: string;
  /** Settles once the link has ended, for any reason. */
  readonly closed: Promise<void>;

  #ws: WebSocket;
  #options: Required<NodeLinkOptions>;
  #handlers: LinkHandlers;
  #logger: Logger;
  #streams = new Map<number, LinkStream>();
  #waiting = new Set<LinkStream>();
  #requests = new PendingRequests();
  #dialer: boolean;
  #nextStream: number;
  #ended = false;
  #silentTicks = 0;
  #heartbeat: NodeJS.Timeout;
  #endedResolve!: () => void;
  #host: StreamHost;
  /** Writes handed to `ws` with `#afterWrite`, not yet taken by the socket. */
  #watchedWrites = 0;
  #retryFlush: NodeJS.Timeout | undefined;
  #afterWrite = (): void => {
    this.#watchedWrites--;
    if (this.#waiting.size > 0) this.#flush();
  };

  constructor(
    ws: WebSocket,
    init: {
      peer: string;
      dialer: boolean;
      handlers: LinkHandlers;
      options?: NodeLinkOptions;
      logger?: Logger;
    },
  ) {
    this.#ws = ws;
    this.peer = init.peer;
    this.#options = { ...LINK_DEFAULTS, ...init.options };
    this.#handlers = init.handlers;
    this.#logger = init.logger ?? pino({ level: "silent" });
    this.#dialer = init.dialer;
    // Dialer: 1, 3, 5…; acceptor: 2, 4, 6….
    this.#nextStream = init.dialer ? -1 : 0;
    this.closed = new Promise((resolve) => {
      this.#endedResolve = resolve;
    });
    this.#host = {
      maxFrameBytes: this.#options.maxFrameBytes,
      write: (frame) => this.#write(frame),
      writable: () => this.#ws.bufferedAmount < this.#options.highWaterBytes,
      wantFlush: (stream) => {
        this.#waiting.add(stream);
        this.#flush();
      },
      forget: (stream) => {
        this.#streams.delete(stream.id);
        this.#waiting.delete(stream);
      },
      violation: (reason) => this.#violation(reason),
    };
    ws.binaryType = "nodebuffer";
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      this.#silentTicks = 0;
      if (isBinary) this.#receive(data);
      else this.#violation("text frame");
    });
    ws.on("pong", () => {
      this.#silentTicks = 0;
    });
    ws.on("error", () => {});
    ws.on("close", () => this.#end());
    this.#heartbeat = setInterval(() => this.#tick(), this.#options.heartbeatMs);
    this.#heartbeat.unref();
    if (ws.readyState !== OPEN) this.#end();
  }

  /** The socket is open and the link usable. */
  get isOpen(): boolean {
    return !this.#ended && this.#ws.readyState === OPEN;
  }

  /** Streams open on this link now. */
  get streamCount(): number {
    return this.#streams.size;
  }

  /** Requests sent on this link and not answered yet. */
  get pendingRequests(): number {
    return this.#requests.size;
  }

  /** Bytes the socket holds that the kernel has not taken yet. */
  get bufferedAmount(): number {
    return this.#ws.bufferedAmount;
  }

  /**
   * Carry a connection to the peer: the peer's stream handler gets `target` and `meta`.
   * Data may be sent at once; it flows as soon as the peer grants its window.
   * Throws `LinkError("ERR_LINK_CLOSED")` when the link has ended.
   *
   * @example
   * const stream = link.openStream({ agent: "chat", name: "room-1" }, { connectionId, claims, url });
   * stream.onMessage((data) => client.send(data));
   * stream.onClose((code, reason) => client.close(code, reason));
   */
  openStream(target: LinkTarget, meta: LinkStreamMeta = {}): LinkStream {
    if (!this.isOpen) throw new LinkError("ERR_LINK_CLOSED");
    const frameId = nextId(this.#nextStream);
    const frame = encodeOpen(frameId, this.#options.window, target, meta);
    if (frame.byteLength > this.#options.maxFrameBytes)
      throw new LinkError("ERR_LINK_FRAME_TOO_LARGE");
    this.#nextStream = frameId;
    // Credit starts at zero: the peer grants its window when it has seen the open.
    const stream = this.#newStream(frameId, { target, meta, peer: this.peer }, 0);
    this.#write(frame);
    return stream;
  }

  /**
   * Send a request to the peer's request handler and wait for its reply. Rejects with
   * `LinkError`: `ERR_LINK_CLOSED` if the link ends first, `ERR_LINK_REQUEST_TIMEOUT`,
   * `ERR_LINK_REQUEST_FAILED` (the handler threw), `ERR_LINK_NO_HANDLER`,
   * `ERR_LINK_FRAME_TOO_LARGE`.
   */
  request(
    target: LinkTarget,
    payload: unknown,
    options: { body?: Uint8Array; timeoutMs?: number } = {},
  ): Promise<LinkReply> {
    if (!this.isOpen) return Promise.reject(new LinkError("ERR_LINK_CLOSED"));
    const id = this.#requests.nextId();
    const json = JSON.stringify({ target: { agent: target.agent, name: target.name }, payload });
    const frame = encodeMessage(LinkFrameType.Request, id, json, options.body);
    if (frame.byteLength > this.#options.maxFrameBytes) {
      return Promise.reject(new LinkError("ERR_LINK_FRAME_TOO_LARGE"));
    }
    const reply = this.#requests.wait(id, options.timeoutMs ?? this.#options.requestTimeoutMs);
    this.#write(frame);
    return reply;
  }

  /** Handle streams the peer opens on this link (overrides the node's shared handler). */
  onStream(handler: StreamHandler): void {
    this.#handlers = { ...this.#handlers, stream: handler };
  }

  /** Handle requests the peer sends on this link (overrides the node's shared handler). */
  onRequest(handler: RequestHandler): void {
    this.#handlers = { ...this.#handlers, request: handler };
  }

  /** Close the link; every stream on it closes 1013 on both sides. */
  close(): void {
    if (this.#ws.readyState === OPEN) {
      this.#ws.close(CloseCode.GoingAway, "");
      // A peer that never answers the close must not hold the socket for ws's 30 s.
      setTimeout(() => this.#ws.terminate(), 2_000).unref();
    }
    this.#end();
  }

  /** Drop the socket at once (tests of link death, or a peer that stopped answering). */
  terminate(): void {
    this.#ws.terminate();
    this.#end();
  }

  // --- receiving -------------------------------------------------------------------------

  #receive(data: Buffer): void {
    let frame: LinkFrame;
    try {
      frame = decodeFrame(data);
    } catch (error) {
      if (!(error instanceof LinkProtocolError)) throw error;
      this.#violation(error.message);
      return;
    }
    switch (frame.type) {
      case LinkFrameType.Text:
      case LinkFrameType.Binary:
        this.#streams.get(frame.id)?.receive(frame.data, data.byteLength - HEADER_BYTES);
        return;
      case LinkFrameType.Credit:
        this.#streams.get(frame.id)?.credit(frame.bytes);
        return;
      case LinkFrameType.Close:
        this.#streams.get(frame.id)?.remoteClose(frame.code, frame.reason);
        return;
      case LinkFrameType.Open:
        this.#accept(frame.id, frame.window, {
          target: frame.target,
          meta: frame.meta,
          peer: this.peer,
        });
        return;
      case LinkFrameType.Request:
        this.#serve(frame.id, {
          target: frame.target,
          payload: frame.payload,
          ...(frame.body !== undefined ? { body: frame.body } : {}),
          peer: this.peer,
        });
        return;
      case LinkFrameType.Reply:
        this.#requests.settle(frame.id, {
          payload: frame.payload,
          ...(frame.body !== undefined ? { body: frame.body } : {}),
        });
        return;
      case LinkFrameType.Fail:
        this.#requests.settle(frame.id, new LinkError(frame.code));
        return;
    }
  }

  #accept(id: number, peerWindow: number, info: LinkStreamInfo): void {
    // The peer numbers its streams with the other parity; anything else would collide.
    if (id % 2 === (this.#dialer ? 1 : 0) || this.#streams.has(id)) {
      this.#violation("bad stream id");
      return;
    }
    const stream = this.#newStream(id, info, peerWindow);
    const handler = this.#handlers.stream;
    if (handler === undefined || this.#streams.size > this.#options.maxStreams) {
      stream.close(CloseCode.TryAgainLater, handler === undefined ? "no handler" : "too many");
      return;
    }
    this.#write(encodeCredit(id, this.#options.window));
    try {
      const result = handler(stream, info);
      if (result instanceof Promise) result.catch((error) => this.#handlerFailed(stream, error));
    } catch (error) {
      this.#handlerFailed(stream, error);
    }
  }

  #handlerFailed(stream: LinkStream, error: unknown): void {
    this.#logger.error({ err: error, peer: this.peer }, "link stream handler failed");
    stream.close(CloseCode.InternalError, "");
  }

  #serve(id: number, request: LinkRequest): void {
    const handler = this.#handlers.request;
    if (handler === undefined) {
      this.#write(encodeFail(id, "ERR_LINK_NO_HANDLER"));
      return;
    }
    const reply = (async () => handler(request))();
    reply.then(
      (result) => {
        if (!this.isOpen) return;
        if (result === null || typeof result !== "object" || !("payload" in result)) {
          this.#write(encodeFail(id, "ERR_LINK_REQUEST_FAILED"));
          return;
        }
        const json = JSON.stringify({ payload: result.payload });
        const frame = encodeMessage(LinkFrameType.Reply, id, json, result.body);
        this.#write(
          frame.byteLength > this.#options.maxFrameBytes
            ? encodeFail(id, "ERR_LINK_FRAME_TOO_LARGE")
            : frame,
        );
      },
      (error: unknown) => {
        // The cause stays in this node's log; the peer learns only that it failed.
        this.#logger.error({ err: error, peer: this.peer }, "link request handler failed");
        if (this.isOpen) this.#write(encodeFail(id, "ERR_LINK_REQUEST_FAILED"));
      },
    );
  }

  // --- sending ---------------------------------------------------------------------------

  #newStream(id: number, info: LinkStreamInfo, credit: number): LinkStream {
    const stream = new LinkStream(this.#host, {
      id,
      info,
      credit,
      limits: { window: this.#options.window, maxBufferedBytes: this.#options.maxBufferedBytes },
    });
    this.#streams.set(id, stream);
    return stream;
  }

  #write(frame: Buffer): void {
    if (this.#ended || this.#ws.readyState !== OPEN) return;
    // The frame that crosses the high-water mark carries a callback: when the socket has
    // taken it, queued streams get their turn again.
    if (this.#ws.bufferedAmount + frame.byteLength < this.#options.highWaterBytes) {
      this.#ws.send(frame);
      return;
    }
    this.#watchedWrites++;
    this.#ws.send(frame, this.#afterWrite);
  }

  /** Round robin over streams with queued data, one frame each per turn. */
  #flush(): void {
    let progress = true;
    while (progress && this.#waiting.size > 0) {
      progress = false;
      for (const stream of this.#waiting) {
        if (!this.#host.writable()) {
          // Pings and pongs can fill the socket without a callback of ours to wake us.
          if (this.#watchedWrites === 0) this.#scheduleFlush();
          return;
        }
        if (stream.flushOne()) progress = true;
        if (!stream.hasQueued) this.#waiting.delete(stream);
      }
    }
  }

  #scheduleFlush(): void {
    if (this.#retryFlush !== undefined || this.#ended) return;
    this.#retryFlush = setTimeout(() => {
      this.#retryFlush = undefined;
      this.#flush();
    }, 10);
    this.#retryFlush.unref();
  }

  // --- ending ----------------------------------------------------------------------------

  #tick(): void {
    if (this.#ended) return;
    if (++this.#silentTicks > 2) {
      this.#logger.warn({ peer: this.peer }, "node link silent; closing it");
      this.terminate();
      return;
    }
    if (this.#ws.readyState === OPEN) this.#ws.ping();
  }

  #violation(reason: string): void {
    this.#logger.warn({ peer: this.peer, reason }, "node link protocol violation");
    if (this.#ws.readyState === OPEN) this.#ws.close(CloseCode.PolicyViolation, "");
    this.#end();
  }

  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    clearInterval(this.#heartbeat);
    clearTimeout(this.#retryFlush);
    for (const stream of [...this.#streams.values()]) stream.linkLost();
    this.#streams.clear();
    this.#waiting.clear();
    this.#requests.rejectAll(() => new LinkError("ERR_LINK_CLOSED"));
    this.#endedResolve();
  }
}

/**
 * One stream of a node link: a client connection carried from its edge node to the owner
 * of its agent instance. Flow control is per stream and counted in payload bytes: a sender
 * may send while it holds credit, the receiver grants credit back as its handler consumes,
 * so a receiver that stops reading holds at most one window (plus one message) of this
 * stream, and the sender's queue behind it is bounded too: past `maxBufferedBytes` the
 * stream is closed 1013, the same answer a local client that stops reading gets.
 */
import { CloseCode } from "../protocol/close-codes.js";
import { LinkError } from "./link-errors.js";
import {
  encodeClose,
  encodeCredit,
  encodeData,
  HEADER_BYTES,
  type LinkTarget,
} from "./link-frames.js";

/** What the owner needs to attach a connection its edge node admitted. */
export interface LinkStreamMeta {
  /** Server-chosen connection id, the same on both nodes. */
  connectionId?: string;
  /** The verified token claims (`connection.auth`). */
  claims?: Record<string, unknown>;
  /** Read-only connection (no state writes, no RPC that writes). */
  readonly?: boolean;
  /** Request URL with credentials already redacted. */
  url?: string;
  /** Headers the agent may read from `ctx.request`. */
  headers?: Record<string, string>;
  /** Client address as the edge node saw it. */
  remoteAddress?: string;
  [key: string]: unknown;
}

/** What a new stream says about itself on the owner side. */
export interface LinkStreamInfo {
  target: LinkTarget;
  meta: LinkStreamMeta;
  /** Node id of the peer that opened it. */
  peer: string;
}

/** What a stream needs from its link; the link implements it. */
export interface StreamHost {
  readonly maxFrameBytes: number;
  /** Write a frame now, whatever the congestion (control frames, closing flushes). */
  write(frame: Buffer): void;
  /** False while the link's socket holds more than its high-water mark. */
  writable(): boolean;
  /** This stream has queued data: send it when credit or the socket allows. */
  wantFlush(stream: LinkStream): void;
  /** The stream ended; drop it. */
  forget(stream: LinkStream): void;
  /** The peer broke the protocol on this stream: close the whole link. */
  violation(reason: string): void;
}

/** Limits of one stream; the link passes its own. */
export interface StreamLimits {
  /** Bytes this side lets the peer have in flight on the stream. */
  window: number;
  /** Bytes a sender may queue beyond its credit before the stream is closed 1013. */
  maxBufferedBytes: number;
}

type MessageHandler = (data: string | Buffer) => void;
type CloseHandler = (code: number, reason: string) => void;

/** Longest close reason a WebSocket close frame can carry (123 bytes); kept well below. */
const MAX_REASON_CHARS = 120;

/**
 * A duplex stream over a node link. `send` returns false once the stream is out of credit
 * (wait for `onDrain`); `pause` stops delivery and, with it, the credit going back.
 * `onClose` fires exactly once per side, whoever closed and whyever: 1013 when the link died.
 */
export class LinkStream {
  readonly id: number;
  readonly target: LinkTarget;
  readonly meta: LinkStreamMeta;
  /** Node id of the other end. */
  readonly peer: string;

  #host: StreamHost;
  #limits: StreamLimits;
  #credit: number;
  #queue: Buffer[] = [];
  #queuedBytes = 0;
  #needDrain = false;
  /** Bytes received and not yet credited back: what the peer believes is in flight. */
  #outstanding = 0;
  #consumed = 0;
  #inbound: Array<{ data: string | Buffer; bytes: number }> = [];
  #inboundBytes = 0;
  #paused = false;
  #closed: { code: number; reason: string } | undefined;
  /** A close from the peer that waits for buffered messages to be delivered first. */
  #pendingClose: { code: number; reason: string } | undefined;
  #onMessage: MessageHandler | undefined;
  #onClose: CloseHandler | undefined;
  #onDrain: (() => void) | undefined;

  constructor(
    host: StreamHost,
    init: { id: number; info: LinkStreamInfo; credit: number; limits: StreamLimits },
  ) {
    this.#host = host;
    this.id = init.id;
    this.target = init.info.target;
    this.meta = init.info.meta;
    this.peer = init.info.peer;
    this.#credit = init.credit;
    this.#limits = init.limits;
  }

  /** Still open on this side. */
  get isOpen(): boolean {
    return this.#closed === undefined;
  }

  /** Bytes queued on this side that the peer has not been sent yet. */
  get bufferedAmount(): number {
    return this.#queuedBytes;
  }

  /** Bytes received but not delivered (paused, or no handler yet). */
  get pendingInbound(): number {
    return this.#inboundBytes;
  }

  /**
   * Send one message; text arrives as text, bytes as a Buffer. Returns false when the
   * stream is closed or out of credit: send more after `onDrain`, or the stream closes 1013
   * once `maxBufferedBytes` are queued. Throws `LinkError("ERR_LINK_FRAME_TOO_LARGE")`.
   */
  send(data: string | Buffer | Uint8Array): boolean {
    if (this.#closed !== undefined || this.#pendingClose !== undefined) return false;
    const frame = encodeData(
      this.id,
      typeof data === "string" || Buffer.isBuffer(data)
        ? data
        : Buffer.from(data.buffer, data.byteOffset, data.byteLength),
    );
    if (frame.byteLength > this.#host.maxFrameBytes)
      throw new LinkError("ERR_LINK_FRAME_TOO_LARGE");
    if (this.#queue.length === 0 && this.#credit > 0 && this.#host.writable()) {
      this.#credit -= frame.byteLength - HEADER_BYTES;
      this.#host.write(frame);
      if (this.#credit > 0) return true;
      this.#needDrain = true;
      return false;
    }
    this.#queue.push(frame);
    this.#queuedBytes += frame.byteLength - HEADER_BYTES;
    this.#needDrain = true;
    if (this.#queuedBytes > this.#limits.maxBufferedBytes) {
      // The reader on the other side stopped; holding more would grow without bound.
      this.#abort(CloseCode.TryAgainLater, "slow reader");
      return false;
    }
    this.#host.wantFlush(this);
    return false;
  }

  /** Handle every message; messages that arrived before a handler are delivered now. */
  onMessage(handler: MessageHandler): void {
    this.#onMessage = handler;
    this.#deliverBuffered();
  }

  /** Called once, when the stream ends on this side (also right away if it already has). */
  onClose(handler: CloseHandler): void {
    this.#onClose = handler;
    const closed = this.#closed;
    if (closed !== undefined) queueMicrotask(() => handler(closed.code, closed.reason));
  }

  /** Called when a stream whose `send` returned false can take more. */
  onDrain(handler: () => void): void {
    this.#onDrain = handler;
  }

  /** Stop delivering messages; the peer runs out of credit after one window. */
  pause(): void {
    this.#paused = true;
  }

  /** Deliver what arrived while paused and let credit flow again. */
  resume(): void {
    this.#paused = false;
    this.#deliverBuffered();
  }

  /**
   * Close both ends with a WebSocket close code. Messages already queued go out first
   * (bounded by `maxBufferedBytes`), then the close.
   */
  close(code: number = 1000, reason = ""): void {
    if (this.#closed !== undefined) return;
    for (const frame of this.#queue) this.#host.write(frame);
    this.#clearQueue();
    const short = reason.slice(0, MAX_REASON_CHARS);
    this.#host.write(encodeClose(this.id, code, short));
    this.#finish(code, short);
  }

  // --- called by the link ---------------------------------------------------------------

  /** @internal Data from the peer. */
  receive(data: string | Buffer, bytes: number): void {
    if (this.#closed !== undefined || this.#pendingClose !== undefined) return;
    this.#outstanding += bytes;
    // A peer that sends past its credit is broken. Its bound: the window, plus the queue
    // a closing sender flushes regardless of credit, plus the one frame that may overdraw.
    const limits = this.#limits;
    if (this.#outstanding > limits.window + limits.maxBufferedBytes + this.#host.maxFrameBytes) {
      this.#host.violation("stream credit exceeded");
      return;
    }
    if (this.#paused || this.#onMessage === undefined || this.#inbound.length > 0) {
      this.#inbound.push({ data, bytes });
      this.#inboundBytes += bytes;
      return;
    }
    this.#dispatch(data, bytes);
  }

  /** @internal The peer consumed `bytes`. */
  credit(bytes: number): void {
    if (this.#closed !== undefined) return;
    this.#credit += bytes;
    if (this.#queue.length > 0) this.#host.wantFlush(this);
    else this.#drained();
  }

  /** @internal Send the next queued frame if credit allows; true if one went out. */
  flushOne(): boolean {
    const frame = this.#queue[0];
    if (frame === undefined || this.#credit <= 0 || this.#closed !== undefined) return false;
    this.#queue.shift();
    const bytes = frame.byteLength - HEADER_BYTES;
    this.#queuedBytes -= bytes;
    this.#credit -= bytes;
    this.#host.write(frame);
    if (this.#queue.length === 0) this.#drained();
    return true;
  }

  /** @internal Queued data is waiting for credit or the socket. */
  get hasQueued(): boolean {
    return this.#queue.length > 0 && this.#closed === undefined;
  }

  /** @internal The peer closed the stream. */
  remoteClose(code: number, reason: string): void {
    if (this.#closed !== undefined) return;
    this.#clearQueue();
    if (this.#inbound.length > 0 && this.#onMessage === undefined && !this.#paused) {
      // The owner is still starting the instance: deliver what came before the close first.
      this.#pendingClose = { code, reason };
      return;
    }
    // A paused receiver chose not to read; what it did not read dies with the stream.
    this.#inbound = [];
    this.#inboundBytes = 0;
    this.#finish(code, reason);
  }

  /** @internal The link is gone: the edge tells its client to come back (1013). */
  linkLost(): void {
    if (this.#closed !== undefined) return;
    this.#clearQueue();
    this.#inbound = [];
    this.#inboundBytes = 0;
    this.#finish(CloseCode.TryAgainLater, "node link lost");
  }

  // --- internals -------------------------------------------------------------------------

  #dispatch(data: string | Buffer, bytes: number): void {
    try {
      this.#onMessage?.(data);
    } catch {
      // A throwing handler is the embedder's bug; the stream, not the link, pays for it.
      this.close(CloseCode.InternalError, "");
      return;
    }
    this.#consumed += bytes;
    // Credit in halves of the window: one frame per half window, not one per message.
    if (this.#consumed >= this.#limits.window / 2 && this.#closed === undefined) {
      this.#host.write(encodeCredit(this.id, this.#consumed));
      this.#outstanding -= this.#consumed;
      this.#consumed = 0;
    }
  }

  #deliverBuffered(): void {
    while (!this.#paused && this.#onMessage !== undefined && this.#inbound.length > 0) {
      const { data, bytes } = this.#inbound.shift()!;
      this.#inboundBytes -= bytes;
      this.#dispatch(data, bytes);
      if (this.#closed !== undefined) return;
    }
    const pending = this.#pendingClose;
    if (pending !== undefined && this.#inbound.length === 0) {
      this.#pendingClose = undefined;
      this.#finish(pending.code, pending.reason);
    }
  }

  #drained(): void {
    if (!this.#needDrain || this.#credit <= 0 || this.#queue.length > 0) return;
    this.#needDrain = false;
    const handler = this.#onDrain;
    if (handler !== undefined) queueMicrotask(handler);
  }

  /** Close without sending what is queued: that queue is the memory being protected. */
  #abort(code: number, reason: string): void {
    this.#clearQueue();
    this.#host.write(encodeClose(this.id, code, reason));
    this.#finish(code, reason);
  }

  #clearQueue(): void {
    this.#queue = [];
    this.#queuedBytes = 0;
  }

  #finish(code: number, reason: string): void {
    this.#closed = { code, reason };
    this.#host.forget(this);
    try {
      this.#onClose?.(code, reason);
    } catch {
      // Same as a throwing message handler: the embedder's bug must not take the link down.
    }
  }
}

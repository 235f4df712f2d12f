import type { Message } from "partysocket/ws";
import { AgentCallError } from "./errors.js";

/** A frame made while the connection was not accepted, sent once it is. */
export interface QueuedFrame {
  text: Message;
  /** The RPC call the frame carries, if it is one. */
  callId?: string;
  /** A `setState`: only the last one is kept. */
  isState?: boolean;
}

/**
 * Frames waiting for the next accepted connection, in the order they were made. Held by the
 * client rather than partysocket, which would flush them on the bare socket open — before
 * the server has accepted the credentials.
 */
export class Outbox {
  #frames: QueuedFrame[] = [];
  readonly #limit: number;

  /** `limit`: frames kept at the most (`maxQueuedMessages`). */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Keep a frame; throws `queue_full` (naming `what`) when `limit` frames wait already. */
  push(frame: QueuedFrame, what: string): void {
    if (this.#frames.length >= this.#limit) {
      throw new AgentCallError("queue_full", what, "too many messages waiting for the connection");
    }
    this.#frames.push(frame);
  }

  /** Keep a `setState` frame, replacing the one that waits: only the last write matters. */
  putState(text: Message): void {
    const queued = this.#frames.findIndex((frame) => frame.isState);
    if (queued === -1) this.push({ text, isState: true }, "setState");
    else this.#frames[queued] = { text, isState: true };
  }

  /** True when a `setState` waits. */
  hasState(): boolean {
    return this.#frames.some((frame) => frame.isState);
  }

  /** Drop the frame of one call (it timed out). */
  dropCall(id: string): void {
    this.#frames = this.#frames.filter((frame) => frame.callId !== id);
  }

  /** Drop every call's frame (they were all rejected); state and raw messages stay. */
  dropCalls(): void {
    this.#frames = this.#frames.filter((frame) => frame.callId === undefined);
  }

  /**
   * Hand the frames to `send` in order. When `send` returns `false` (the socket went away
   * mid-flush) that frame and the rest are kept for the next connection.
   */
  flush(send: (frame: QueuedFrame) => boolean): void {
    const frames = this.#frames;
    this.#frames = [];
    for (const [index, frame] of frames.entries()) {
      if (!send(frame)) {
        this.#frames = [...frames.slice(index), ...this.#frames];
        break;
      }
    }
  }
}

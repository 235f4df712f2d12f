import { FrameType, type RpcResponseFrame } from "../protocol/frames.js";

/** Where a stream's frames go: the calling connection. */
export interface StreamSink {
  sendFrame(frame: RpcResponseFrame): boolean;
}

/**
 * Handed to a streaming callable as its first argument. Each `send` reaches the caller
 * as a chunk; `end` finishes the call with an optional final value.
 *
 * @example
 * @callable({ streaming: true })
 * async countdown(stream: StreamingResponse, from: number) {
 *   for (let i = from; i > 0; i--) stream.send(i);
 *   stream.end("liftoff");
 * }
 */
export class StreamingResponse {
  readonly #sink: StreamSink;
  readonly #id: string;
  #closed = false;

  constructor(sink: StreamSink, id: string) {
    this.#sink = sink;
    this.#id = id;
  }

  /** Whether `end()` or `error()` has been called. */
  get isClosed(): boolean {
    return this.#closed;
  }

  /** Send one chunk. Returns false when the stream is already closed. */
  send(chunk: unknown): boolean {
    if (this.#closed) return false;
    return this.#sink.sendFrame({
      type: FrameType.Rpc,
      id: this.#id,
      success: true,
      result: chunk,
      done: false,
    });
  }

  /** Finish the stream, optionally with a final chunk. */
  end(finalChunk?: unknown): boolean {
    if (this.#closed) return false;
    this.#closed = true;
    return this.#sink.sendFrame({
      type: FrameType.Rpc,
      id: this.#id,
      success: true,
      result: finalChunk,
      done: true,
    });
  }

  /** Finish the stream with an error message for the caller. */
  error(message: string): boolean {
    if (this.#closed) return false;
    this.#closed = true;
    return this.#sink.sendFrame({
      type: FrameType.Rpc,
      id: this.#id,
      success: false,
      error: message,
    });
  }
}

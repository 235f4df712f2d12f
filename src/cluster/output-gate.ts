import type { ConnectionSocket, OutputGate } from "../agent/connection.js";

interface Held {
  socket: ConnectionSocket;
  message: string | ArrayBuffer | ArrayBufferView;
}

/**
 * The output gate of one instance in cluster mode: nothing a turn sends (RPC results,
 * broadcasts, state frames) and no HTTP response leaves the node before the changes
 * committed so far are durable in PostgreSQL. Sends are held in one queue, in order, and
 * released together after one `flush()` of the change shipper; when nothing changed, the
 * flush resolves at once and so does the gate.
 *
 * A flush that fails releases nothing: `onFailure` decides (the instance closes its
 * connections 1013 and stops serving), so no client is told of a write that may be lost.
 */
export class ChangeGate implements OutputGate {
  readonly #flush: () => Promise<void>;
  readonly #onFailure: (error: unknown) => void;
  #held: Held[] = [];
  #barriers: Array<{ resolve: () => void; reject: (error: unknown) => void }> = [];
  #running: Promise<void> | undefined;
  #again = false;
  #failed: unknown;

  constructor(flush: () => Promise<void>, onFailure: (error: unknown) => void) {
    this.#flush = flush;
    this.#onFailure = onFailure;
  }

  send(socket: ConnectionSocket, message: string | ArrayBuffer | ArrayBufferView): void {
    if (this.#failed !== undefined) return;
    this.#held.push({ socket, message });
    this.#kick();
  }

  /** Resolves once everything committed before the call is durable (for HTTP responses). */
  barrier(): Promise<void> {
    if (this.#failed !== undefined) return Promise.reject(this.#failed);
    return new Promise((resolve, reject) => {
      this.#barriers.push({ resolve, reject });
      this.#kick();
    });
  }

  #kick(): void {
    if (this.#running !== undefined) {
      // Whatever arrived during a flush waits for the next one: it may belong to a turn
      // that committed after that flush captured its changes.
      this.#again = true;
      return;
    }
    // A microtask later, so the rest of the turn's synchronous sends share this flush.
    this.#running = Promise.resolve().then(() => this.#run());
  }

  async #run(): Promise<void> {
    do {
      this.#again = false;
      const held = this.#held;
      const barriers = this.#barriers;
      this.#held = [];
      this.#barriers = [];
      try {
        await this.#flush();
      } catch (error) {
        this.#failed = error;
        for (const barrier of barriers) barrier.reject(error);
        for (const barrier of this.#barriers) barrier.reject(error);
        this.#held = [];
        this.#barriers = [];
        this.#running = undefined;
        this.#onFailure(error);
        return;
      }
      for (const { socket, message } of held) if (socket.readyState === 1) socket.send(message);
      for (const barrier of barriers) barrier.resolve();
    } while (this.#again || this.#held.length > 0 || this.#barriers.length > 0);
    this.#running = undefined;
  }
}

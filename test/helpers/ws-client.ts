import { randomBytes } from "node:crypto";
import { request } from "node:http";
import type { Socket } from "node:net";
import WebSocket from "ws";

export type Frame = Record<string, unknown>;

/** One message as the client received it: parsed JSON object, text, or binary. */
export type Received = Frame | string | Buffer;

export interface Closed {
  code: number;
  reason: string;
}

/** Options of `RawClient`: those of `ws`, plus the offered subprotocols and recording. */
export interface RawClientOptions extends WebSocket.ClientOptions {
  /** Subprotocols to offer in `Sec-WebSocket-Protocol`. */
  protocols?: string | string[];
  /** Keep received messages in `received` (default true; off for long runs: only `counts` grow). */
  record?: boolean;
}

const DEFAULT_TIMEOUT_MS = 5_000;

/**
 * The one raw WebSocket client of the test suite: a plain `ws` client that records every
 * message and the close. `opened` resolves with the identity frame once the server accepted
 * the connection (and sent the state that follows it), and rejects with the close when it
 * was refused instead. Waits reject as soon as the connection closes without what they wait
 * for, with the close code and reason on the error.
 */
export class RawClient {
  readonly ws: WebSocket;
  readonly received: Received[] = [];
  /** Messages received, by `type` (`text`/`binary` for messages that are not JSON objects). */
  readonly counts: Record<string, number> = {};
  readonly closed: Promise<Closed>;
  readonly opened: Promise<Frame>;
  #closedWith: Closed | undefined;
  #listeners = new Set<() => void>();
  #onMessage: Array<(message: Received) => void> = [];
  /** Answers awaited by rpc id, so they are seen even when nothing is recorded. */
  #answers = new Map<string, (frame: Frame) => void>();
  #nextId = 0;

  constructor(url: string, options: RawClientOptions = {}) {
    const { protocols, record = true, ...wsOptions } = options;
    this.ws = new WebSocket(url, protocols, wsOptions);
    this.ws.on("error", () => {});
    this.closed = new Promise((resolve) => {
      this.ws.on("close", (code, reason) => {
        this.#closedWith = { code, reason: reason.toString() };
        resolve(this.#closedWith);
        this.#notify();
      });
    });
    this.opened = new Promise((resolve, reject) => {
      let identity: Frame | undefined;
      this.ws.on("message", (data: Buffer, isBinary) => {
        let message: Received = isBinary ? Buffer.from(data) : data.toString("utf8");
        if (typeof message === "string" && message.startsWith("{")) {
          try {
            message = JSON.parse(message) as Frame;
          } catch {
            // A user message that only looks like JSON.
          }
        }
        if (record) this.received.push(message);
        const type = isFrame(message) ? String(message.type) : isBinary ? "binary" : "text";
        this.counts[type] = (this.counts[type] ?? 0) + 1;
        if (isFrame(message)) {
          if (message.type === "cf_agent_identity") {
            identity = message;
            if (message.stateFollows !== true) resolve(message);
          } else if (identity !== undefined && message.type === "cf_agent_state") {
            resolve(identity);
          } else if (isFinalAnswer(message)) {
            const id = message.id as string;
            const waiter = this.#answers.get(id);
            this.#answers.delete(id);
            waiter?.(message);
          }
        }
        for (const listener of this.#onMessage) listener(message);
        this.#notify();
      });
      this.closed.then((c) => reject(closedError("closed", c)));
    });
    this.opened.catch(() => {});
  }

  /** Call `listener` with each message in the tick it arrives in (for tests that must act at once). */
  onMessage(listener: (message: Received) => void): void {
    this.#onMessage.push(listener);
  }

  /** Frames (parsed JSON objects) received so far, optionally of one `type`. */
  frames(type?: string): Frame[] {
    return this.received.filter(
      (m): m is Frame => isFrame(m) && (type === undefined || m.type === type),
    );
  }

  /** Text and binary messages that are not JSON objects. */
  messages(): Array<string | Buffer> {
    return this.received.filter((m): m is string | Buffer => !isFrame(m));
  }

  /** Wait until some received message satisfies `test`; resolves with it. */
  waitFor<T extends Received = Received>(
    test: (message: Received) => boolean,
    what = "a message",
    timeoutMs = DEFAULT_TIMEOUT_MS,
  ): Promise<T> {
    return this.#until(
      () => this.received.find(test) as T | undefined,
      () => `${what}; got ${JSON.stringify(this.received)}`,
      timeoutMs,
    );
  }

  /** Wait until at least `count` received messages satisfy `test`; resolves with all of them. */
  waitForCount(
    test: (message: Received) => boolean,
    count: number,
    what = "messages",
    timeoutMs = DEFAULT_TIMEOUT_MS,
  ): Promise<Received[]> {
    return this.#until(
      () => {
        const matching = this.received.filter(test);
        return matching.length >= count ? matching : undefined;
      },
      () => `${count} ${what}`,
      timeoutMs,
    );
  }

  /** Send an `rpc` frame without waiting; returns its id. */
  sendCall(method: string, args: unknown[] = []): string {
    const id = `r${this.#nextId++}`;
    this.send({ type: "rpc", id, method, args });
    return id;
  }

  /** Call `method`; resolves with the final answer frame (`done: true` or an error). */
  call(method: string, args: unknown[] = [], timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Frame> {
    const id = `r${this.#nextId++}`;
    return this.request({ type: "rpc", id, method, args }, id, timeoutMs);
  }

  /** Call `method` and return its result; throws on an error answer. */
  async rpc<T = unknown>(
    method: string,
    args: unknown[] = [],
    timeoutMs = DEFAULT_TIMEOUT_MS,
  ): Promise<T> {
    const frame = await this.call(method, args, timeoutMs);
    if (frame.success !== true) throw new Error(`rpc ${method} failed: ${String(frame.error)}`);
    return frame.result as T;
  }

  /** Send `frame` as given (a raw text frame may be malformed) and wait for the answer to `id`. */
  request(frame: Frame | string, id: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Frame> {
    const answer = this.answer(id, timeoutMs);
    this.send(frame);
    return answer;
  }

  /** The final answer to rpc `id` (already received, or still to come). */
  answer(id: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Frame> {
    const found = this.received.find((m) => isFrame(m) && isFinalAnswer(m) && m.id === id);
    if (found !== undefined) return Promise.resolve(found as Frame);
    let answered: Frame | undefined;
    this.#answers.set(id, (frame) => {
      answered = frame;
      this.#notify();
    });
    return this.#until(
      () => answered,
      () => `the answer to ${id}`,
      timeoutMs,
    ).finally(() => this.#answers.delete(id));
  }

  send(message: Frame | string | Buffer): void {
    this.ws.send(
      typeof message === "string" || Buffer.isBuffer(message) ? message : JSON.stringify(message),
    );
  }

  close(): Promise<Closed> {
    if (this.ws.readyState === WebSocket.CONNECTING || this.ws.readyState === WebSocket.OPEN) {
      this.ws.close();
    }
    return this.closed;
  }

  /** Drop the TCP connection without a close frame. */
  terminate(): void {
    this.ws.terminate();
  }

  /** The TCP socket under the WebSocket. */
  get socket(): Socket {
    return (this.ws as unknown as { _socket: Socket })._socket;
  }

  /** Resolve with `probe()` once it is defined; reject on timeout or on a close without it. */
  #until<T>(probe: () => T | undefined, what: () => string, timeoutMs: number): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = probe();
        if (found !== undefined) {
          done();
          resolve(found);
        } else if (this.#closedWith !== undefined) {
          done();
          reject(closedError(`closed before ${what()}`, this.#closedWith));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#listeners.delete(check);
      };
      this.#listeners.add(check);
      check();
    });
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }
}

export function isFrame(message: Received): message is Frame {
  return typeof message === "object" && !Buffer.isBuffer(message);
}

function isFinalAnswer(frame: Frame): boolean {
  return (
    frame.type === "rpc" &&
    typeof frame.id === "string" &&
    (frame.done === true || frame.success === false)
  );
}

function closedError(message: string, closed: Closed): Error & Closed {
  return Object.assign(new Error(`${message}: ${closed.code} ${closed.reason}`), closed);
}

/** Open a client and wait until the server accepted it (identity frame received). */
export async function connect(url: string, options?: RawClientOptions): Promise<RawClient> {
  const client = new RawClient(url, options);
  await client.opened;
  return client;
}

/** Open a client the server is expected to close at once; resolves with that close. */
export async function refused(
  url: string,
  options?: RawClientOptions,
): Promise<Closed & { received: Received[] }> {
  const client = new RawClient(url, options);
  const closed = await client.closed;
  return { ...closed, received: client.received };
}

/**
 * Send a WebSocket upgrade for `rawPath` exactly as given (no URL normalisation, so `..`
 * reaches the server) and resolve with the HTTP status: 101 when the server accepted it.
 */
export function upgradeStatus(port: number, rawPath: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: "127.0.0.1",
      port,
      path: rawPath,
      headers: {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Key": randomBytes(16).toString("base64"),
        "Sec-WebSocket-Version": "13",
      },
    });
    req.on("upgrade", (res, socket) => {
      socket.destroy();
      resolve(res.statusCode ?? 0);
    });
    req.on("response", (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", reject);
    req.end();
  });
}

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

/**
 * A plain `ws` client that records every message and the close. `opened` resolves with the
 * identity frame once the server accepted the connection (and sent the state that follows
 * it), and rejects with the close when it was refused instead.
 */
export class RawClient {
  readonly ws: WebSocket;
  readonly received: Received[] = [];
  readonly closed: Promise<Closed>;
  readonly opened: Promise<Frame>;
  #listeners = new Set<() => void>();
  #nextId = 0;

  constructor(url: string, options: WebSocket.ClientOptions = {}) {
    this.ws = new WebSocket(url, options);
    this.ws.on("error", () => {});
    this.closed = new Promise((resolve) => {
      this.ws.on("close", (code, reason) => {
        resolve({ code, reason: reason.toString() });
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
        this.received.push(message);
        if (isFrame(message) && message.type === "cf_agent_identity") {
          identity = message;
          if (message.stateFollows !== true) resolve(message);
        } else if (
          identity !== undefined &&
          isFrame(message) &&
          message.type === "cf_agent_state"
        ) {
          resolve(identity);
        }
        this.#notify();
      });
      this.closed.then((c) => reject(Object.assign(new Error(`closed ${c.code} ${c.reason}`), c)));
    });
    this.opened.catch(() => {});
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
    timeoutMs = 5_000,
  ): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.received.find(test);
        if (found !== undefined) {
          done();
          resolve(found as T);
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.received)}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#listeners.delete(check);
      };
      this.#listeners.add(check);
      check();
    });
  }

  /** Wait until at least `count` received messages satisfy `test`. */
  async waitForCount(test: (message: Received) => boolean, count: number, what = "messages") {
    await new Promise<void>((resolve, reject) => {
      const check = () => {
        if (this.received.filter(test).length >= count) {
          done();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out waiting for ${count} ${what}`));
      }, 5_000);
      const done = () => {
        clearTimeout(timer);
        this.#listeners.delete(check);
      };
      this.#listeners.add(check);
      check();
    });
    return this.received.filter(test);
  }

  /** Send an `rpc` frame without waiting; returns its id. */
  sendCall(method: string, args: unknown[] = []): string {
    const id = `r${this.#nextId++}`;
    this.send({ type: "rpc", id, method, args });
    return id;
  }

  /** Call `method`; resolves with the final answer frame (`done: true` or an error). */
  call(method: string, args: unknown[] = []): Promise<Frame> {
    const id = this.sendCall(method, args);
    return this.answer(id);
  }

  /** The final answer to rpc `id`. */
  answer(id: string): Promise<Frame> {
    return this.waitFor<Frame>(
      (m) =>
        isFrame(m) && m.type === "rpc" && m.id === id && (m.done === true || m.success === false),
      `the answer to ${id}`,
    );
  }

  /** Call `method` and return its result; throws on an error answer. */
  async rpc<T = unknown>(method: string, args: unknown[] = []): Promise<T> {
    const frame = await this.call(method, args);
    if (frame.success !== true) throw new Error(`rpc ${method} failed: ${String(frame.error)}`);
    return frame.result as T;
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

  /** The TCP socket under the WebSocket. */
  get socket(): Socket {
    return (this.ws as unknown as { _socket: Socket })._socket;
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }
}

export function isFrame(message: Received): message is Frame {
  return typeof message === "object" && !Buffer.isBuffer(message);
}

/** Open a client and wait until the server accepted it (identity frame received). */
export async function connect(url: string, options?: WebSocket.ClientOptions): Promise<RawClient> {
  const client = new RawClient(url, options);
  await client.opened;
  return client;
}

/** Open a client the server is expected to close at once; resolves with that close. */
export async function refused(url: string): Promise<Closed & { received: Received[] }> {
  const client = new RawClient(url);
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

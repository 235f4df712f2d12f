import { type ChildProcess, fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import type { ChildConfig, ChildStats } from "./server-child.js";

// One server helper for every suite.
export { startServer, tempDir, wsUrl } from "../helpers/server.js";

export interface Closed {
  code: number;
  reason: string;
}

type Frame = Record<string, unknown>;

/**
 * A test client that records every frame and close. `opened` resolves once the identity
 * frame arrives (the connection was accepted); it rejects with the close when refused.
 */
export class Client {
  readonly ws: WebSocket;
  readonly frames: Array<Frame | string> = [];
  /** Frames received, by `type` (`text`/`binary` for non-framework frames). */
  readonly counts: Record<string, number> = {};
  readonly closed: Promise<Closed>;
  readonly opened: Promise<void>;
  #waiters = new Map<string, (frame: Frame) => void>();
  #nextId = 0;

  constructor(
    url: string,
    options: WebSocket.ClientOptions & {
      protocols?: string[];
      /** Keep received frames in `frames` (off for long runs: only `counts` grow). */
      record?: boolean;
    } = {},
  ) {
    const record = options.record ?? true;
    this.ws = new WebSocket(url, options.protocols, options);
    this.ws.on("error", () => {});
    this.closed = new Promise((resolve) => {
      this.ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() }));
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.on("message", (data, isBinary) => {
        const text = data.toString();
        let frame: Frame | string = text;
        if (!isBinary && text.startsWith("{")) {
          try {
            frame = JSON.parse(text) as Frame;
          } catch {
            // A user frame that merely starts with "{".
          }
        }
        if (record) this.frames.push(frame);
        const type = typeof frame === "object" ? String(frame.type) : isBinary ? "binary" : "text";
        this.counts[type] = (this.counts[type] ?? 0) + 1;
        if (typeof frame === "object") {
          if (frame.type === "cf_agent_identity") resolve();
          if (frame.type === "rpc" && typeof frame.id === "string") {
            const waiter = this.#waiters.get(frame.id);
            if (waiter !== undefined && (frame.done === true || frame.success === false)) {
              this.#waiters.delete(frame.id);
              waiter(frame);
            }
          }
        }
      });
      this.closed.then((c) => reject(Object.assign(new Error(`closed ${c.code}`), c)));
    });
    this.opened.catch(() => {});
  }

  /** Call `method`; resolves with the whole answer frame (success or not). */
  call(method: string, args: unknown[] = [], timeoutMs = 5_000): Promise<Frame> {
    const id = `c${this.#nextId++}`;
    return this.send({ type: "rpc", id, method, args }, id, timeoutMs);
  }

  /** Call `method` and return its result; throws on an error answer. */
  async rpc<T = unknown>(method: string, args: unknown[] = [], timeoutMs = 5_000): Promise<T> {
    const frame = await this.call(method, args, timeoutMs);
    if (frame.success !== true) throw new Error(`rpc ${method} failed: ${String(frame.error)}`);
    return frame.result as T;
  }

  /** Send a raw text frame that carries rpc id `id`, and wait for its answer. */
  send(frame: Frame | string, id: string, timeoutMs = 5_000): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(id);
        reject(new Error(`no answer to ${id} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.set(id, (answer) => {
        clearTimeout(timer);
        resolve(answer);
      });
      this.closed.then((c) => {
        if (!this.#waiters.delete(id)) return;
        clearTimeout(timer);
        reject(Object.assign(new Error(`closed ${c.code} before answer to ${id}`), c));
      });
      this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
    });
  }

  close(): Promise<Closed> {
    if (this.ws.readyState === WebSocket.CONNECTING || this.ws.readyState === WebSocket.OPEN) {
      this.ws.close();
    }
    return this.closed;
  }

  terminate(): void {
    this.ws.terminate();
  }
}

/** Open a client and wait until it is accepted. */
export async function openClient(
  url: string,
  options?: ConstructorParameters<typeof Client>[1],
): Promise<Client> {
  const client = new Client(url, options);
  await client.opened;
  return client;
}

/** Resolves with the close of a connection that is expected to be refused. */
export async function refusal(
  url: string,
  options?: ConstructorParameters<typeof Client>[1],
): Promise<Closed & { frames: Array<Frame | string> }> {
  const client = new Client(url, options);
  const closed = await client.closed;
  return { ...closed, frames: client.frames };
}

/**
 * Encode one client→server WebSocket frame by hand, so tests can send what `ws` would
 * never produce: reserved opcodes and bits, unmasked frames, invalid UTF-8, bad lengths.
 */
export function encodeFrame(options: {
  opcode: number;
  payload: Buffer;
  fin?: boolean;
  rsv?: number;
  masked?: boolean;
  /** Declared length, when it should differ from the payload's. */
  length?: number;
}): Buffer {
  const { opcode, payload, fin = true, rsv = 0, masked = true } = options;
  const length = options.length ?? payload.length;
  const head: number[] = [(fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f)];
  const maskBit = masked ? 0x80 : 0;
  let ext: Buffer;
  if (length < 126) {
    head.push(maskBit | length);
    ext = Buffer.alloc(0);
  } else if (length < 65536) {
    head.push(maskBit | 126);
    ext = Buffer.alloc(2);
    ext.writeUInt16BE(length);
  } else {
    head.push(maskBit | 127);
    ext = Buffer.alloc(8);
    ext.writeBigUInt64BE(BigInt(length));
  }
  if (!masked) return Buffer.concat([Buffer.from(head), ext, payload]);
  const mask = randomBytes(4);
  const body = Buffer.alloc(payload.length);
  for (let i = 0; i < payload.length; i++) body[i] = payload[i]! ^ mask[i & 3]!;
  return Buffer.concat([Buffer.from(head), ext, mask, body]);
}

/** The raw TCP socket under a client `ws` connection. */
export function rawSocketOf(ws: WebSocket): Socket {
  return (ws as unknown as { _socket: Socket })._socket;
}

/**
 * Open a plain TCP connection (optionally from a given loopback address). It reads and
 * discards what the server sends, so the server closing it is seen as a close.
 */
export function tcp(port: number, localAddress?: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1", ...(localAddress && { localAddress }) });
    socket.resume();
    socket.once("connect", () => {
      socket.off("error", reject);
      resolve(socket);
    });
    socket.once("error", reject);
  });
}

/** Poll `condition` every 20 ms until it holds or `timeoutMs` passes. */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 5_000,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function rssMiB(): number {
  return Math.round((process.memoryUsage().rss / 1024 / 1024) * 10) / 10;
}

/** A server running in a child process (see server-child.ts). */
export interface ChildServer {
  readonly child: ChildProcess;
  readonly port: number;
  /** RSS, heap and counts, from inside the child. */
  stats(): Promise<ChildStats>;
  /** Resolves with the exit signal or code. */
  readonly exited: Promise<NodeJS.Signals | number | null>;
  kill(signal?: NodeJS.Signals): Promise<NodeJS.Signals | number | null>;
}

const CHILD_SCRIPT = fileURLToPath(new URL("./server-child.ts", import.meta.url));

/** Start server-child.ts with `config`; resolves once it listens. */
export function startChildServer(config: ChildConfig, timeoutMs = 15_000): Promise<ChildServer> {
  const child = fork(CHILD_SCRIPT, [], {
    execArgv: ["--import", "tsx", "--expose-gc"],
    env: { ...process.env, OUTPOST_CHILD: JSON.stringify(config) },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
    child.once("exit", (code, signal) => resolve(signal ?? code)),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error("child server did not start"));
    }, timeoutMs);
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`child server exited early: ${code}`));
    });
    child.on("message", function onListening(message: { type?: string; port?: number }) {
      if (message?.type !== "listening") return;
      child.off("message", onListening);
      clearTimeout(timer);
      resolve({
        child,
        port: message.port!,
        exited,
        stats: () =>
          new Promise((resolveStats) => {
            const onStats = (m: { type?: string }) => {
              if (m?.type !== "stats") return;
              child.off("message", onStats);
              resolveStats(m as ChildStats);
            };
            child.on("message", onStats);
            child.send({ type: "stats" });
          }),
        kill(signal: NodeJS.Signals = "SIGTERM") {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
          return exited;
        },
      });
    });
  });
}

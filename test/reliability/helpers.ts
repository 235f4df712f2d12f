import { type ChildProcess, fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import type { ChildConfig, ChildStats } from "./server-child.js";

// One server helper and one raw socket client (../helpers/ws-client.ts) for every suite.
export { startServer, tempDir, wsUrl } from "../helpers/server.js";

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

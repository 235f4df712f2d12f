import { type ChildProcess, spawn } from "node:child_process";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { LinkPool, type LinkPoolOptions } from "../../src/cluster/link-pool.js";
import { LinkServer, type LinkServerOptions } from "../../src/cluster/link-server.js";
import type { LinkStream } from "../../src/cluster/link-stream.js";

/** The cluster secret of every link test (48 bytes). */
export const CLUSTER_SECRET = "link-test-secret-0123456789-abcdefghijklmnopqrstu";

/** One node's link endpoint and pool, listening on 127.0.0.1 port 0. */
export interface TestNode {
  id: string;
  server: LinkServer;
  pool: LinkPool;
  /** `host:port` of its link listener. */
  address: string;
  port: number;
  /** Every line the node logged, parsed. */
  logs: Array<Record<string, unknown>>;
  /** The raw log text, to search for what must never be there. */
  logText: () => string;
}

const started: TestNode[] = [];

/** Start a node; `stopNodes()` (in `afterEach`) closes every node started. */
export async function startNode(
  id: string,
  options: Partial<LinkServerOptions> & { pool?: LinkPoolOptions; port?: number } = {},
): Promise<TestNode> {
  const { pool: poolOptions, port: wanted, ...serverOptions } = options;
  const raw: string[] = [];
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      const text = chunk.toString("utf8");
      raw.push(text);
      for (const line of text.split("\n")) if (line.trim() !== "") logs.push(JSON.parse(line));
      done();
    },
  });
  const server = new LinkServer({
    nodeId: id,
    secret: CLUSTER_SECRET,
    logger: pino({ level: "debug" }, sink),
    ...serverOptions,
  });
  const { port } = await server.listen({ host: "127.0.0.1", port: wanted ?? 0 });
  const pool = new LinkPool(server, poolOptions);
  const node = {
    id,
    server,
    pool,
    address: `127.0.0.1:${port}`,
    port,
    logs,
    logText: () => raw.join(""),
  };
  started.push(node);
  return node;
}

export async function stopNodes(): Promise<void> {
  for (const node of started.splice(0)) {
    node.pool.close();
    await node.server.close();
  }
}

/** Everything a stream received, and how it closed. */
export interface Collected {
  messages: Array<string | Buffer>;
  closed: Promise<{ code: number; reason: string }>;
  isClosed: () => boolean;
}

export function collect(stream: LinkStream): Collected {
  const messages: Array<string | Buffer> = [];
  let done = false;
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    stream.onClose((code, reason) => {
      done = true;
      resolve({ code, reason });
    });
  });
  stream.onMessage((data) => messages.push(data));
  return { messages, closed, isClosed: () => done };
}

const LINK_NODE = fileURLToPath(new URL("../fixtures/link-node.ts", import.meta.url));

/** Settings of a node in its own process (see fixtures/link-node.ts). */
export interface LinkNodeSettings {
  nodeId: string;
  port?: number;
  heartbeatMs?: number;
  /** Dial this node and open `streams` streams to it. */
  dial?: { nodeId: string; address: string; streams: number };
}

export interface LinkChild {
  child: ChildProcess;
  port: number;
  address: string;
  exited: Promise<unknown>;
}

/** Start a link node in a child process; resolves once it listens (and dialed, if asked). */
export function spawnLinkNode(settings: LinkNodeSettings, timeoutMs = 20_000): Promise<LinkChild> {
  const child = spawn(process.execPath, ["--import", "tsx", LINK_NODE], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, LINK_NODE: JSON.stringify({ secret: CLUSTER_SECRET, ...settings }) },
  });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error("the link node did not start"));
    }, timeoutMs);
    exited.then(() => {
      clearTimeout(timer);
      reject(new Error("the link node exited before it was ready"));
    });
    let buffered = "";
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (chunk: string) => {
      buffered += chunk;
      let newline = buffered.indexOf("\n");
      while (newline >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        newline = buffered.indexOf("\n");
        const parsed = JSON.parse(line) as { port?: number };
        if (parsed.port !== undefined) {
          clearTimeout(timer);
          resolve({ child, port: parsed.port, address: `127.0.0.1:${parsed.port}`, exited });
        }
      }
    });
  });
}

/** SIGKILL the child if it still runs, and wait for it to be gone. */
export async function killLinkNode(node: LinkChild | undefined): Promise<void> {
  if (node === undefined) return;
  const { child } = node;
  if (child.exitCode === null && child.signalCode === null) {
    child.kill("SIGCONT");
    child.kill("SIGKILL");
  }
  await node.exited;
}

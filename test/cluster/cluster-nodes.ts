import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createInterface, type Interface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll } from "vitest";
import {
  createKeySet,
  type IssueTokenOptions,
  issueToken,
  type KeySet,
} from "../../src/auth/index.js";
import type { LinkTls } from "../../src/cluster/link-tls.js";
import { tempDir } from "../helpers/server.js";
import { connect, type RawClient } from "../helpers/ws-client.js";
import { createTestSchema, POSTGRES_URL, type TestSchema } from "./postgres.js";

const SCRIPT = fileURLToPath(new URL("./fixtures/cluster-node.ts", import.meta.url));

/** One node of a test cluster, in its own process (see fixtures/cluster-node.ts). */
export interface TestNode {
  readonly id: string;
  readonly port: number;
  readonly child: ChildProcess;
  readonly exited: Promise<unknown>;
  /** Revoke on this node; resolves with how many connections it closed. */
  revoke(target: { sub?: string; jti?: string }): Promise<number>;
  kill(signal?: NodeJS.Signals): Promise<unknown>;
}

/**
 * Start a node on `dataDir` in the cluster schema `schema`, reaching PostgreSQL at
 * `postgres` (default `POSTGRES_URL`; a proxy's address to cut it off).
 */
export async function startNode(
  id: string,
  options: {
    dataDir: string;
    schema: string;
    secret: string;
    port?: number;
    tickets?: boolean;
    postgres?: string;
    /** `cluster.tls` of the node: its links are mutual TLS. */
    tls?: LinkTls;
  },
): Promise<TestNode> {
  const child = spawn(process.execPath, ["--import", "tsx", SCRIPT, options.dataDir], {
    stdio: ["pipe", "pipe", "inherit"],
    env: {
      ...process.env,
      OUTPOST_TEST_SECRET: options.secret,
      OUTPOST_TEST_POSTGRES: options.postgres ?? POSTGRES_URL,
      OUTPOST_TEST_SCHEMA: options.schema,
      OUTPOST_TEST_NODE: id,
      ...(options.port !== undefined && { OUTPOST_TEST_PORT: String(options.port) }),
      ...(options.tickets === true && { OUTPOST_TEST_TICKETS: "1" }),
      ...(options.tls !== undefined && { OUTPOST_TEST_TLS: JSON.stringify(options.tls) }),
    },
  });
  const exited = once(child, "exit");
  const lines: Interface = createInterface({ input: child.stdout! });
  const first = await Promise.race([
    once(lines, "line").then(([line]) => JSON.parse(line as string) as { port: number }),
    exited.then(() => {
      throw new Error(`node ${id} exited before it listened`);
    }),
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`node ${id} did not start`)), 20_000).unref(),
    ),
  ]);
  return {
    id,
    port: first.port,
    child,
    exited,
    revoke(target) {
      return new Promise((resolve, reject) => {
        lines.once("line", (line: string) =>
          resolve((JSON.parse(line) as { revoked: number }).revoked),
        );
        exited.then(() => reject(new Error(`node ${id} exited`)));
        child.stdin!.write(`${JSON.stringify({ revoke: target })}\n`);
      });
    },
    kill(signal: NodeJS.Signals = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/**
 * A test file's cluster: the app's key set (HS256; the nodes' link secret is the cluster's
 * own, kept in PostgreSQL), one PostgreSQL schema, node processes on data directories of
 * their own, and raw clients through any node. The key set and the schema are made before
 * the file's tests; after them every node is killed, the schema dropped and the directories
 * removed. `stop()` ends the nodes and clients sooner, for files whose tests each run their
 * own.
 */
export interface TestCluster {
  readonly schema: TestSchema;
  /** Every node started and not yet stopped. */
  readonly nodes: readonly TestNode[];
  /** Start node `id` (on a fresh data directory unless given one). */
  node(
    id: string,
    options?: { tickets?: boolean; postgres?: string; dataDir?: string },
  ): Promise<TestNode>;
  /** A token for `sub` on room `name`. */
  token(sub: string, name: string, extra?: Partial<IssueTokenOptions>): Promise<string>;
  /** The WebSocket address of room `name` on `at`, with `token`. */
  url(at: TestNode, name: string, token: string): string;
  /** A raw client of room `name` through `at`, as `sub` (alice unless given). */
  open(at: TestNode, name: string, sub?: string): Promise<RawClient>;
  /** A raw client of `url`. */
  connect(url: string): Promise<RawClient>;
  /** Terminate every client, then kill -9 every node (a paused one is resumed first). */
  stop(): Promise<void>;
}

export function testCluster(): TestCluster {
  const secret = randomBytes(32).toString("base64url");
  let keys: KeySet | undefined;
  let schema: TestSchema | undefined;
  const dirs: Array<{ remove(): void }> = [];
  const nodes: TestNode[] = [];
  const clients: RawClient[] = [];
  beforeAll(async () => {
    keys = await createKeySet({ secret });
    schema = await createTestSchema();
  });
  const cluster: TestCluster = {
    get schema() {
      return schema!;
    },
    nodes,
    async node(id, options = {}) {
      let dataDir = options.dataDir;
      if (dataDir === undefined) {
        const dir = tempDir(`outpost-${id}-`);
        dirs.push(dir);
        dataDir = dir.dir;
      }
      const started = await startNode(id, {
        schema: schema!.schema,
        secret,
        ...options,
        dataDir,
      });
      nodes.push(started);
      return started;
    },
    token(sub, name, extra = {}) {
      return issueToken(keys!, { sub, agent: "room", name, ...extra });
    },
    url(at, name, token) {
      return `ws://127.0.0.1:${at.port}/agents/room/${name}?token=${token}`;
    },
    async open(at, name, sub = "alice") {
      return cluster.connect(cluster.url(at, name, await cluster.token(sub, name)));
    },
    async connect(url) {
      const client = await connect(url);
      clients.push(client);
      return client;
    },
    async stop() {
      for (const client of clients.splice(0)) client.ws.terminate();
      for (const n of nodes) if (n.child.exitCode === null) n.child.kill("SIGCONT");
      await Promise.all(nodes.splice(0).map((n) => n.kill("SIGKILL")));
    },
  };
  afterAll(async () => {
    await cluster.stop();
    await schema?.drop();
    for (const dir of dirs) dir.remove();
  });
  return cluster;
}

import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface, type Interface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { LinkTls } from "../../src/cluster/link-tls.js";
import { POSTGRES_URL } from "./postgres.js";

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

/** Start a contender's server in its own pinned process and talk to it. */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nextMessage, startChild, stopChild } from "../child.js";
import type {
  Algorithm,
  BenchKeys,
  Contender,
  ServerCommand,
  ServerConfig,
  ServerStats,
} from "../config.js";

/** Core the servers run on; the load generator gets the other one. */
export const SERVER_CPU = 0;

export interface ServerOptions {
  keys: BenchKeys;
  algorithm: Algorithm;
  /** Directory for `--cpu-prof` output; profiling is off without it. */
  profileDir?: string;
  /** Outpost only: keep the per-address failure limit on. */
  failureLimit?: boolean;
  /** Listen on this port (a restarted server keeps its predecessor's); default any free one. */
  port?: number;
  /** Start on this data directory (a restart keeps its data); default a fresh one. */
  dataDir?: string;
  /** Outpost only: one node of a cluster on this PostgreSQL database and schema. */
  cluster?: { postgres: string; schema: string };
}

export class ServerProcess {
  private constructor(
    readonly contender: Contender,
    readonly port: number,
    private readonly child: ChildProcess,
    /** Where the server keeps its data; a restart on it finds the same state. */
    readonly dataDir: string,
  ) {}

  static async start(contender: Contender, options: ServerOptions): Promise<ServerProcess> {
    const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), `outpost-bench-${contender}-`));
    const config: ServerConfig = {
      contender,
      algorithm: options.algorithm,
      keys: options.keys,
      dataDir,
      ...(options.failureLimit === true && { failureLimit: true }),
      ...(options.port !== undefined && { port: options.port }),
      ...(options.cluster !== undefined && { cluster: options.cluster }),
    };
    const nodeArgs = ["--expose-gc"];
    if (options.profileDir !== undefined) {
      // One folder per server: the loader's worker thread writes a profile of its own, and
      // a fixed file name would let it overwrite the main thread's.
      nodeArgs.push(
        "--cpu-prof",
        `--cpu-prof-dir=${join(options.profileDir, `${contender}-${options.algorithm}`)}`,
      );
    }
    const child = startChild(`bench/servers/${contender}.ts`, {
      cpu: SERVER_CPU,
      nodeArgs,
      env: { BENCH_SERVER: JSON.stringify(config) },
    });
    try {
      const port = await nextMessage(
        child,
        (m) =>
          (m as { type?: string }).type === "listening" ? (m as { port: number }).port : undefined,
        30_000,
        `${contender} server`,
      );
      return new ServerProcess(contender, port, child, dataDir);
    } catch (error) {
      child.kill("SIGKILL");
      if (options.dataDir === undefined) rmSync(dataDir, { recursive: true, force: true });
      throw error;
    }
  }

  /** The server's memory and CPU, taken inside its process (after a full GC when `gc`). */
  stats(gc = false): Promise<ServerStats> {
    const command: ServerCommand = { type: "stats", gc };
    this.child.send(command);
    return nextMessage(
      this.child,
      (m) => ((m as { type?: string }).type === "stats" ? (m as ServerStats) : undefined),
      30_000,
      `${this.contender} stats`,
    );
  }

  /** Write a heap snapshot (after a full GC) from inside the server; resolves its path. */
  snapshot(path: string): Promise<string> {
    const command: ServerCommand = { type: "snapshot", path };
    this.child.send(command);
    return nextMessage(
      this.child,
      (m) =>
        (m as { type?: string }).type === "snapshot" ? (m as { path: string }).path : undefined,
      120_000,
      `${this.contender} heap snapshot`,
    );
  }

  /**
   * SIGKILL, as a crash or a hard redeploy does: no close frames, the clients see their
   * sockets drop. The data directory is kept for the next start; resolves once the process
   * is gone (and its port free).
   */
  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    this.child.kill("SIGKILL");
    await exited;
  }

  async stop(): Promise<void> {
    const command: ServerCommand = { type: "close" };
    await stopChild(this.child, command);
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

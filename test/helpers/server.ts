import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach } from "vitest";
import { type AgentClass, type ServeHandle, type ServeOptions, serve } from "../../src/index.js";
import { connect, type RawClient } from "./ws-client.js";

/** A fresh directory under the OS temp dir, removed by `remove()`. */
export function tempDir(prefix = "outpost-test-"): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export type TestServer = ServeHandle & {
  /** The data directory the server uses. */
  readonly dataDir: string;
  /** Close the server, then remove its data directory when this helper created it. */
  stop(): Promise<void>;
};

/** A quiet server on 127.0.0.1, port 0, with its own data directory unless one is given. */
export async function startServer(
  agents: Record<string, AgentClass>,
  options: Partial<ServeOptions> = {},
): Promise<TestServer> {
  const owned = options.dataDir === undefined ? tempDir() : undefined;
  const dataDir = options.dataDir ?? owned!.dir;
  const handle = await serve({
    agents,
    port: 0,
    hostname: "127.0.0.1",
    logger: false,
    handleSignals: false,
    ...options,
    dataDir,
  });
  return Object.assign(handle, {
    dataDir,
    async stop() {
      await handle.close();
      owned?.remove();
    },
  });
}

/** `ws://127.0.0.1:<port><path>`. */
export function wsUrl(server: { port: number }, path: string): string {
  return `ws://127.0.0.1:${server.port}${path}`;
}

/** `http://127.0.0.1:<port><path>`. */
export function httpUrl(server: { port: number }, path: string): string {
  return `http://127.0.0.1:${server.port}${path}`;
}

/** The servers, raw clients and directories of a test file's current test. */
export interface ServerHarness {
  /** Servers still running; one stopped by the test itself is taken out by it. */
  readonly servers: TestServer[];
  /** Raw clients still open; one closed by the test itself is taken out by it. */
  readonly clients: RawClient[];
  /** A quiet server of the file's agents (see `startServer`). */
  start(options?: Partial<ServeOptions>): Promise<TestServer>;
  /** A raw client of `/agents/<agent>/<name>` on `server` (the file's agent unless given). */
  open(server: { port: number }, name: string, agent?: string): Promise<RawClient>;
  /** A directory of its own, for a server started again on the same data. */
  tempDir(prefix?: string): { dir: string; remove(): void };
}

/**
 * Set up a `ServerHarness` of `agents` for the calling test file, `agent` being the URL
 * name `open` uses by default. After each test its clients are closed, then its servers
 * stopped, then its directories removed.
 */
export function serverHarness(agents: Record<string, AgentClass>, agent: string): ServerHarness {
  const dirs: Array<{ remove(): void }> = [];
  const harness: ServerHarness = {
    servers: [],
    clients: [],
    async start(options = {}) {
      const server = await startServer(agents, options);
      harness.servers.push(server);
      return server;
    },
    async open(server, name, as = agent) {
      const client = await connect(wsUrl(server, `/agents/${as}/${name}`));
      harness.clients.push(client);
      return client;
    },
    tempDir(prefix) {
      const dir = tempDir(prefix);
      dirs.push(dir);
      return dir;
    },
  };
  afterEach(async () => {
    await Promise.all(harness.clients.splice(0).map((c) => c.close()));
    await Promise.all(harness.servers.splice(0).map((s) => s.stop()));
    for (const dir of dirs.splice(0)) dir.remove();
  });
  return harness;
}

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AgentClass, type ServeHandle, type ServeOptions, serve } from "../../src/index.js";

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

/**
 * An Outpost server in its own process, for tests that must kill it (SIGKILL) or measure
 * its memory apart from the clients'. Run with `node --import tsx server-child.ts`; the
 * configuration comes as JSON in OUTPOST_CHILD. It reports `{ type: "listening", port }`
 * over IPC, and answers `{ type: "stats" }` with its RSS, heap and connection counts.
 */
import type { AuthPolicy } from "../../src/index.js";
import { serve } from "../../src/index.js";
import { Crashy, Flaky, Ledger } from "./fixtures.js";

export interface ChildConfig {
  dataDir: string;
  port?: number;
  /** Module exporting `createAuth(): Promise<AuthPolicy>`, for authenticated runs. */
  authModule?: string;
  maxConnectionsPerInstance?: number;
}

export interface ChildStats {
  type: "stats";
  rss: number;
  heapUsed: number;
  /** Bytes of Buffers and ArrayBuffers (where request bodies would be held). */
  arrayBuffers: number;
  connections: number;
  instances: number;
  refusals: Record<string, number>;
}

const config = JSON.parse(process.env.OUTPOST_CHILD ?? "{}") as ChildConfig;
let auth: AuthPolicy | undefined;
if (config.authModule !== undefined) {
  const module = (await import(config.authModule)) as { createAuth(): Promise<AuthPolicy> };
  auth = await module.createAuth();
}
const server = await serve({
  agents: { Ledger, Flaky, Crashy },
  port: config.port ?? 0,
  hostname: "127.0.0.1",
  dataDir: config.dataDir,
  logger: false,
  handleSignals: true,
  ...(auth !== undefined && { auth }),
  ...(config.maxConnectionsPerInstance !== undefined && {
    maxConnectionsPerInstance: config.maxConnectionsPerInstance,
  }),
});

process.on("message", (message: { type?: string }) => {
  if (message?.type !== "stats") return;
  const stats = server.stats();
  // After a full collection (the child runs with --expose-gc), only what is live counts.
  (globalThis as { gc?: () => void }).gc?.();
  const memory = process.memoryUsage();
  const answer: ChildStats = {
    type: "stats",
    rss: memory.rss,
    heapUsed: memory.heapUsed,
    arrayBuffers: memory.arrayBuffers,
    connections: stats.connections,
    instances: stats.instances,
    refusals: stats.refusals,
  };
  process.send?.(answer);
});
// The parent going away must not leave a server behind.
process.on("disconnect", () => {
  server.close().then(() => process.exit(0));
});
process.send?.({ type: "listening", port: server.port });

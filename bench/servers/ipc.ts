/**
 * The server side of the orchestrator's IPC: report the port, answer stats from inside the
 * process (RSS after a full GC when `--expose-gc` is on), and close when asked or when the
 * orchestrator goes away, so no server outlives a run.
 */
import { writeHeapSnapshot } from "node:v8";
import type { ServerCommand, ServerConfig, ServerMessage, ServerStats } from "../config.js";

export function readConfig(): ServerConfig {
  const raw = process.env.BENCH_SERVER;
  if (raw === undefined) throw new Error("BENCH_SERVER is not set: start me from bench/run.ts");
  return JSON.parse(raw) as ServerConfig;
}

/** Collect garbage until the heap stops shrinking (a few passes at most). */
function fullGc(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) return;
  let before = Number.POSITIVE_INFINITY;
  for (let pass = 0; pass < 4; pass++) {
    gc();
    const after = process.memoryUsage().heapUsed;
    if (after >= before * 0.99) break;
    before = after;
  }
}

export function stats(connections: number, gc: boolean): ServerStats {
  if (gc) fullGc();
  const memory = process.memoryUsage();
  const cpu = process.cpuUsage();
  // maxRSS is in kilobytes; the kernel keeps the peak, so no sampling can miss it.
  const maxRss = process.resourceUsage().maxRSS * 1024;
  return {
    rss: memory.rss,
    heapUsed: memory.heapUsed,
    external: memory.external,
    arrayBuffers: memory.arrayBuffers,
    cpuMicros: cpu.user + cpu.system,
    maxRss,
    connections,
  };
}

function send(message: ServerMessage): void {
  process.send?.(message);
}

/** Wire a listening server to the orchestrator. */
export function attach(port: number, connections: () => number, close: () => Promise<void>): void {
  let closing = false;
  const shutdown = () => {
    if (closing) return;
    closing = true;
    // A server that hangs while closing must still go away.
    setTimeout(() => process.exit(0), 3_000).unref();
    close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("message", (command: ServerCommand) => {
    if (command.type === "stats") send({ type: "stats", ...stats(connections(), command.gc) });
    else if (command.type === "snapshot") {
      fullGc();
      send({ type: "snapshot", path: writeHeapSnapshot(command.path) });
    } else if (command.type === "close") shutdown();
  });
  process.on("disconnect", shutdown);
  send({ type: "listening", port });
}

/**
 * `npx tsx bench/link.ts`: what a node link costs, two ways.
 *
 * - The link alone: from the edge node's process, RPC-like round trips (one in flight,
 *   64-byte text) and small-frame throughput (up to `--window` in flight) over a link
 *   stream and over link requests, vs a direct `ws` socket to the owner from that process.
 * - A client's view: a client on loopback straight to the owner's own `ws` server vs through
 *   an edge node that carries it over a link stream, or turns each message into a request.
 *   This adds a process hop, which is what relaying costs a client on another node.
 *
 * The owner and the edge node run in processes of their own (pinned to cores 0 and 1 when
 * `taskset` exists); paths take turns within each of `--rounds` rounds and the median round
 * is reported, with the target "relayed RPC p99 ≤ 1.5× direct + 1 ms" checked. Timings
 * are printed, never asserted: the machine is shared.
 */
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { nextMessage, ROOT, startChild, stopChild } from "./child.js";
import { type Channel, roundTrips, socketChannel, throughput } from "./link-measure.js";
import { median, quantile, round } from "./stats.js";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    calls: { type: "string", default: "3000" },
    frames: { type: "string", default: "100000" },
    window: { type: "string", default: "500" },
    json: { type: "boolean", default: false },
  },
});
const ROUNDS = Number(values.rounds);
const CALLS = Number(values.calls);
const FRAMES = Number(values.frames);
const WINDOW = Number(values.window);

type Path = "direct" | "stream" | "request";
const PATHS: Path[] = ["direct", "stream", "request"];

async function open(url: string): Promise<WebSocket> {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  return ws;
}

const secret = randomBytes(48).toString("base64url");
const script = join(ROOT, "bench/link-node.ts");
const children: ChildProcess[] = [];
try {
  const owner = startChild(script, {
    cpu: 0,
    env: { LINK_BENCH: JSON.stringify({ role: "owner", secret }) },
  });
  children.push(owner);
  const ports = await nextMessage(
    owner,
    (m) => m as { linkPort: number; directPort: number },
    30_000,
    "owner",
  );
  const edge = startChild(script, {
    cpu: 1,
    env: {
      LINK_BENCH: JSON.stringify({
        role: "edge",
        secret,
        owner: `127.0.0.1:${ports.linkPort}`,
        direct: `ws://127.0.0.1:${ports.directPort}/`,
      }),
    },
  });
  children.push(edge);
  const { port } = await nextMessage(edge, (m) => m as { port: number }, 30_000, "edge");
  const urls: Record<Path, string> = {
    direct: `ws://127.0.0.1:${ports.directPort}/`,
    stream: `ws://127.0.0.1:${port}/stream`,
    request: `ws://127.0.0.1:${port}/request`,
  };
  const sockets = {} as Record<Path, WebSocket>;
  const channels = {} as Record<Path, Channel>;
  for (const path of PATHS) {
    sockets[path] = await open(urls[path]);
    channels[path] = socketChannel(sockets[path]);
    await roundTrips(channels[path], 500); // Warm-up: JIT, socket buffers.
  }
  type Alone = Record<"ws" | "stream" | "request", { p50: number; p99: number; rate: number }>;
  const alone: Alone[] = [];
  const p50: Record<Path, number[]> = { direct: [], stream: [], request: [] };
  const p99: Record<Path, number[]> = { direct: [], stream: [], request: [] };
  const rate: Record<Path, number[]> = { direct: [], stream: [], request: [] };
  for (let r = 0; r < ROUNDS; r++) {
    // A different path first in each round, so drift does not favour one.
    const order = PATHS.map((_, i) => PATHS[(i + r) % PATHS.length]!);
    for (const path of order) {
      const times = await roundTrips(channels[path], CALLS);
      p50[path].push(quantile(times, 0.5));
      p99[path].push(quantile(times, 0.99));
    }
    for (const path of order) {
      rate[path].push(await throughput(channels[path], FRAMES, WINDOW));
    }
    edge.send({ calls: CALLS, frames: FRAMES, window: WINDOW });
    alone.push(
      await nextMessage(edge, (m) => (m as { alone?: Alone }).alone, 300_000, "edge measurement"),
    );
  }
  const aloneResult = Object.fromEntries(
    (["ws", "stream", "request"] as const).map((name) => [
      name,
      {
        p50Ms: round(median(alone.map((a) => a[name].p50))),
        p99Ms: round(median(alone.map((a) => a[name].p99))),
        framesPerSecond: Math.round(median(alone.map((a) => a[name].rate))),
      },
    ]),
  ) as Record<
    "ws" | "stream" | "request",
    { p50Ms: number; p99Ms: number; framesPerSecond: number }
  >;
  const result = Object.fromEntries(
    PATHS.map((path) => [
      path,
      {
        p50Ms: round(median(p50[path])),
        p99Ms: round(median(p99[path])),
        framesPerSecond: Math.round(median(rate[path])),
      },
    ]),
  ) as Record<Path, { p50Ms: number; p99Ms: number; framesPerSecond: number }>;
  const limit = 1.5 * result.direct.p99Ms + 1;
  if (values.json) {
    console.log(JSON.stringify({ alone: aloneResult, client: result, targetP99Ms: round(limit) }));
  }
  console.log(`node link benchmark: ${ROUNDS} rounds × ${CALLS} round trips, ${FRAMES} frames`);
  console.log("the link alone, from the edge process   p50 ms   p99 ms   frames/s   p99 vs ws");
  const aloneLabel = { ws: "direct ws socket", stream: "link stream", request: "link request" };
  for (const name of ["ws", "stream", "request"] as const) {
    const r = aloneResult[name];
    console.log(
      `${aloneLabel[name].padEnd(38)} ${String(r.p50Ms).padStart(7)} ${String(r.p99Ms).padStart(8)} ` +
        `${String(r.framesPerSecond).padStart(10)}   ${round(r.p99Ms / aloneResult.ws.p99Ms)}×`,
    );
  }
  console.log(
    "a client's view                          p50 ms   p99 ms   frames/s   p99 vs direct",
  );
  const label: Record<Path, string> = {
    direct: "direct to the owner",
    stream: "edge → link stream",
    request: "edge → link request",
  };
  for (const path of PATHS) {
    const r = result[path];
    console.log(
      `${label[path].padEnd(38)} ${String(r.p50Ms).padStart(7)} ${String(r.p99Ms).padStart(8)} ` +
        `${String(r.framesPerSecond).padStart(10)}   ${round(r.p99Ms / result.direct.p99Ms)}×`,
    );
  }
  for (const path of ["stream", "request"] as const) {
    const ok = result[path].p99Ms <= limit;
    console.log(
      `target ${label[path]}: p99 ${result[path].p99Ms} ms ≤ 1.5 × ${result.direct.p99Ms} + 1 = ${round(limit)} ms: ${ok ? "met" : "MISSED"}`,
    );
  }
  for (const ws of Object.values(sockets)) ws.close();
} finally {
  for (const child of children) await stopChild(child);
}

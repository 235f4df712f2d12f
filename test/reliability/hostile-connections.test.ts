import { execFileSync } from "node:child_process";
import type { Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../helpers/wait.js";
import { connect, type RawClient, refused } from "../helpers/ws-client.js";
import { Ledger } from "./fixtures.js";
import { encodeFrame, rssMiB, sleep, startServer, tcp, wsUrl } from "./helpers.js";

/**
 * Clients that misbehave at the connection level: handshakes that never finish, thousands
 * of sockets that never upgrade, clients that never read, frame floods. In every case the
 * bad sockets are dropped by a limit and a well-behaved client keeps working meanwhile.
 */

const HEADERS_TIMEOUT = 1_000;

/** Two descriptors per loopback socket (both ends live in this process). */
function halfOpenBudget(wanted: number): number {
  let limit = 1024;
  try {
    limit = Number(execFileSync("sh", ["-c", "ulimit -n"]).toString().trim()) || limit;
  } catch {
    // Keep the conservative default.
  }
  return Math.max(100, Math.min(wanted, Math.floor((limit - 300) / 2)));
}

function closedWithin(socket: Socket, timeoutMs: number): Promise<number> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    if (socket.destroyed) return resolve(0);
    const timer = setTimeout(() => reject(new Error("socket still open")), timeoutMs);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(Date.now() - started);
    });
  });
}

describe("hostile connections", () => {
  let server: Awaited<ReturnType<typeof startServer>>;
  let good: RawClient;

  beforeAll(async () => {
    server = await startServer(
      { Ledger },
      {
        headersTimeout: HEADERS_TIMEOUT,
        maxBufferedBytes: 1024 * 1024,
        maxQueuedFrames: 64,
        maxConnectionsPerInstance: 40,
      },
    );
    good = await connect(wsUrl(server, "/agents/ledger/good"));
  });

  afterAll(async () => {
    await good?.close();
    await server?.stop();
  });

  it("drops handshakes that never finish after headersTimeout, even when trickled", async () => {
    const partial = [
      "", // connects, sends nothing
      "GET /agents/ledger/slow HT", // half a request line
      "GET /agents/ledger/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n", // no blank line
    ];
    const sockets = await Promise.all(partial.map(() => tcp(server.port)));
    sockets.forEach((socket, i) => {
      socket.on("error", () => {});
      if (partial[i]) socket.write(partial[i]!);
    });
    // A slowloris: one header byte every 100 ms keeps the socket busy but never finishes.
    const trickle = await tcp(server.port);
    trickle.on("error", () => {});
    trickle.write("GET /agents/ledger/slow HTTP/1.1\r\nX-A: ");
    const timer = setInterval(() => trickle.writable && trickle.write("a"), 100);
    try {
      const times = await Promise.all(
        [...sockets, trickle].map((s) => closedWithin(s, HEADERS_TIMEOUT + 3_000)),
      );
      console.log(`stalled handshakes dropped after ${times.join(", ")} ms`);
      for (const ms of times) expect(ms).toBeGreaterThanOrEqual(HEADERS_TIMEOUT - 100);
    } finally {
      clearInterval(timer);
    }
    expect(await good.rpc("add", ["stalled"])).toBe(1);
  });

  it("keeps serving a good client while thousands of sockets never finish the upgrade", async () => {
    // Its own server with a longer timeout, so every bad socket is alive at the same time.
    const flooded = await startServer({ Ledger }, { headersTimeout: 5_000 });
    const count = halfOpenBudget(2_000);
    const sockets: Socket[] = [];
    const rssBefore = rssMiB();
    const started = Date.now();
    try {
      // Batches stay under the listen backlog so the kernel does not drop SYNs.
      for (let i = 0; i < count; i += 250) {
        const batch = await Promise.all(
          Array.from({ length: Math.min(250, count - i) }, () => tcp(flooded.port)),
        );
        for (const socket of batch) {
          socket.on("error", () => {});
          socket.write("GET /agents/ledger/flood HTTP/1.1\r\nHost: 127.0.0.1\r\n");
          sockets.push(socket);
        }
      }
      const openedMs = Date.now() - started;
      const alive = sockets.filter((s) => !s.destroyed).length;
      // While they hang: new clients connect and their calls are answered.
      const latencies: number[] = [];
      for (let i = 0; i < 5; i++) {
        const t0 = Date.now();
        const client = await connect(wsUrl(flooded, "/agents/ledger/good"));
        expect(await client.rpc("add", ["during-flood"])).toBe(i + 1);
        latencies.push(Date.now() - t0);
        await client.close();
      }
      const rssDuring = rssMiB();
      await waitFor(() => sockets.every((s) => s.destroyed), "half-open sockets to drop", 10_000);
      const droppedMs = Date.now() - started;
      console.log(
        `${count} half-open sockets opened in ${openedMs} ms (${alive} alive together); ` +
          `all dropped ${droppedMs} ms after the first; good client connect+rpc ` +
          `${Math.min(...latencies)}-${Math.max(...latencies)} ms; process RSS ${rssBefore} → ${rssDuring} MiB`,
      );
      // Connecting is slow on some machines (about 650 per second here); nearly all must overlap.
      expect(alive).toBeGreaterThanOrEqual(count * 0.9);
      expect(Math.max(...latencies)).toBeLessThan(1_000);
    } finally {
      for (const socket of sockets) socket.destroy();
      await flooded.stop();
    }
  });

  it("drops a client that never reads once its buffer passes maxBufferedBytes", async () => {
    const url = wsUrl(server, "/agents/ledger/reader");
    const stuck = await connect(url);
    const writer = await connect(url);
    const before = server.stats().connections;
    // The stuck client stops reading from its socket, then asks for 48 MiB of answers
    // (fewer frames than maxQueuedFrames, so it is the buffer cap that must act).
    stuck.socket.pause();
    const rssBefore = rssMiB();
    const started = Date.now();
    for (let i = 0; i < 48; i++) {
      stuck.ws.send(
        JSON.stringify({ type: "rpc", id: `b${i}`, method: "big", args: [1024 * 1024] }),
      );
    }
    // A writer keeps broadcasting state; the stuck client is one of the recipients.
    for (let i = 0; i < 50; i++) await writer.rpc("publish", [{ i, pad: "y".repeat(32 * 1024) }]);
    await waitFor(
      () => server.stats().connections === before - 1,
      "the stuck client to be dropped",
      10_000,
    );
    const rssAfter = rssMiB();
    console.log(
      `non-reading client dropped after ${Date.now() - started} ms; writer still served; ` +
        `process RSS ${rssBefore} → ${rssAfter} MiB (48 MiB requested by the stuck client)`,
    );
    expect(rssAfter - rssBefore).toBeLessThan(48);
    expect(await writer.rpc("publish", [{ done: true }])).toBe(true);
    stuck.terminate();
    await writer.close();
  });

  it("drops a client that floods pings without reading the pongs", async () => {
    const flooder = await connect(wsUrl(server, "/agents/ledger/pings"));
    const neighbour = await connect(wsUrl(server, "/agents/ledger/pings"));
    const socket = flooder.socket;
    socket.pause();
    const ping = encodeFrame({ opcode: 9, payload: Buffer.alloc(125, 1) });
    const burst = Buffer.concat(Array.from({ length: 1_000 }, () => ping));
    const rssBefore = rssMiB();
    // 20 MiB of pings, each asking for a pong the client never reads.
    for (let i = 0; i < 160 && !socket.destroyed; i++) socket.write(burst);
    await waitFor(() => server.stats().connections <= 2, "the ping flooder to be dropped", 5_000);
    expect(rssMiB() - rssBefore).toBeLessThan(48);
    expect(await neighbour.rpc("add", ["pings"])).toBe(1);
    flooder.terminate();
    await neighbour.close();
  });

  it("closes 1013 a client that floods frames behind a slow handler", async () => {
    const flooder = await connect(wsUrl(server, "/agents/ledger/queue"));
    const neighbour = await connect(wsUrl(server, "/agents/ledger/queue"));
    flooder.ws.send(JSON.stringify({ type: "rpc", id: "slow", method: "wait", args: [300] }));
    for (let i = 0; i < 1_000; i++) {
      flooder.ws.send(JSON.stringify({ type: "rpc", id: `f${i}`, method: "get", args: ["q"] }));
    }
    expect((await flooder.closed).code).toBe(1013);
    expect(await neighbour.rpc("add", ["q"])).toBe(1);
    await neighbour.close();
  });

  it("refuses connections past maxConnectionsPerInstance with 1013; other instances unaffected", async () => {
    const url = wsUrl(server, "/agents/ledger/crowd");
    const settled = await Promise.allSettled(
      Array.from({ length: 50 }, () => connect(url, { handshakeTimeout: 5_000 })),
    );
    const open = settled.filter((s) => s.status === "fulfilled").map((s) => s.value);
    const turnedAway = settled.filter((s) => s.status === "rejected");
    expect(open.length).toBe(40);
    for (const r of turnedAway) expect((r.reason as { code: number }).code).toBe(1013);
    expect(await good.rpc("add", ["crowd"])).toBe(1);
    const other = await refused(wsUrl(server, "/agents/ledger/crowd"));
    expect(other.code).toBe(1013);
    expect(other.received).toEqual([]);
    await Promise.all(open.map((c) => c.close()));
    await sleep(50);
    const again = await connect(url);
    await again.close();
  });
});

import { afterEach, describe, expect, it } from "vitest";
import { LINK_DEFAULTS } from "../../src/cluster/link-options.js";
import type { LinkStream } from "../../src/cluster/link-stream.js";
import {
  collect,
  killLinkNode,
  type LinkChild,
  spawnLinkNode,
  startNode,
  stopNodes,
} from "../helpers/links.js";
import { waitFor, within } from "../helpers/wait.js";

let child: LinkChild | undefined;
afterEach(async () => {
  await killLinkNode(child);
  child = undefined;
  await stopNodes();
});

const CHUNK = 16 * 1024;
const MiB = 1024 * 1024;

/** Send `total` bytes in chunks, waiting for `onDrain` whenever `send` says so. */
async function pump(stream: LinkStream, total: number, chunk = Buffer.alloc(CHUNK, 7)) {
  let sent = 0;
  while (sent < total && stream.isOpen) {
    if (stream.send(chunk)) {
      sent += chunk.byteLength;
      continue;
    }
    sent += chunk.byteLength;
    await new Promise<void>((resolve) => stream.onDrain(resolve));
  }
  return sent;
}

/** Start an owner whose "slow" streams are never read and whose other streams count bytes. */
async function slowAndFast() {
  const owner = await startNode("node-b");
  const edge = await startNode("node-a");
  const ownerStreams = new Map<string, LinkStream>();
  let fastBytes = 0;
  owner.server.onStream((stream, { target }) => {
    ownerStreams.set(target.name, stream);
    if (target.name === "slow") stream.pause();
    else stream.onMessage((data) => (fastBytes += data.length));
  });
  const link = await edge.pool.get(owner.id, owner.address);
  const slow = link.openStream({ agent: "feed", name: "slow" });
  const fast = link.openStream({ agent: "feed", name: "fast" });
  await waitFor(() => ownerStreams.size === 2);
  return { link, slow, fast, ownerStreams, fastBytes: () => fastBytes };
}

describe("Backpressure: a slow stream neither grows the sender's memory nor stalls others", () => {
  it("holds a stream whose receiver does not read at one window while a second stream keeps flowing", async () => {
    const { slow, fast, ownerStreams, fastBytes } = await slowAndFast();
    const window = LINK_DEFAULTS.window;
    // A sender that respects `send() === false` stalls on the slow stream…
    let slowSent = 0;
    const chunk = Buffer.alloc(CHUNK, 1);
    while (slow.send(chunk)) slowSent += CHUNK;
    slowSent += CHUNK;
    let drained = false;
    slow.onDrain(() => {
      drained = true;
    });
    // …while 32 MiB go through the fast one.
    const started = performance.now();
    await within(pump(fast, 32 * MiB), 30_000, "32 MiB on the fast stream");
    await waitFor(() => fastBytes() >= 32 * MiB, "fast bytes delivered", 30_000);
    const ms = performance.now() - started;
    const slowOwner = ownerStreams.get("slow")!;
    console.log(
      `fast stream: 32 MiB in ${ms.toFixed(0)} ms (${((32 / ms) * 1000).toFixed(0)} MiB/s) ` +
        `while the slow one holds ${slowOwner.pendingInbound} bytes unread`,
    );
    expect(slowSent).toBeLessThanOrEqual(window + CHUNK);
    expect(slowOwner.pendingInbound).toBe(slowSent);
    expect(slow.bufferedAmount).toBe(0);
    expect(drained).toBe(false);
    // What is sent past the credit waits on the sender, not in the receiver's memory.
    for (let i = 0; i < 32; i++) expect(slow.send(chunk)).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(slow.bufferedAmount).toBe(32 * CHUNK);
    expect(slowOwner.pendingInbound).toBe(slowSent);
    // Reading again returns credit: the queue flows, the stream drains and can send again.
    const got: Array<string | Buffer> = [];
    slowOwner.onMessage((data) => got.push(data));
    slowOwner.resume();
    await waitFor(() => drained, "drain on the slow stream");
    expect(got.reduce((n, d) => n + d.length, 0)).toBe(slowSent + 32 * CHUNK);
    expect(slow.bufferedAmount).toBe(0);
    expect(slow.send(chunk)).toBe(true);
  });

  it("keeps a stream's order across what went out at once and what waited for credit", async () => {
    const { slow, ownerStreams } = await slowAndFast();
    // 60 numbered 8 KiB messages: the first 32 fit the window, the rest wait for credit.
    for (let i = 0; i < 60; i++) slow.send(`${String(i).padStart(4, "0")}${"x".repeat(8188)}`);
    expect(slow.bufferedAmount).toBeGreaterThan(0);
    const seen: number[] = [];
    const owner = ownerStreams.get("slow")!;
    owner.onMessage((data) => seen.push(Number(String(data).slice(0, 4))));
    owner.resume();
    await waitFor(() => seen.length === 60, "all 60 messages");
    expect(seen).toEqual(Array.from({ length: 60 }, (_, i) => i));
    expect(slow.bufferedAmount).toBe(0);
  });

  it("closes 1013 on both sides a stream whose sender ignores backpressure, with memory bounded", async () => {
    const { link, slow, fast, ownerStreams, fastBytes } = await slowAndFast();
    const slowOwnerClosed = collect(ownerStreams.get("slow")!).closed;
    const slowClosed = collect(slow).closed;
    const chunk = Buffer.alloc(64 * 1024, 2);
    const before = process.memoryUsage();
    let peakQueued = 0;
    let peakSocket = 0;
    let attempts = 0;
    // 64 MiB offered to a stream nobody reads, ignoring every `false`.
    for (; attempts < 1024; attempts++) {
      slow.send(chunk);
      peakQueued = Math.max(peakQueued, slow.bufferedAmount);
      peakSocket = Math.max(peakSocket, link.bufferedAmount);
    }
    const after = process.memoryUsage();
    const grown = after.arrayBuffers + after.heapUsed - (before.arrayBuffers + before.heapUsed);
    console.log(
      `64 MiB offered to an unread stream: peak queue ${peakQueued} B, peak socket buffer ` +
        `${peakSocket} B, heap+buffers grew ${(grown / MiB).toFixed(1)} MiB`,
    );
    expect(await within(slowClosed, 10_000, "slow stream closed")).toEqual({
      code: 1013,
      reason: "slow reader",
    });
    expect((await within(slowOwnerClosed, 10_000, "owner side closed")).code).toBe(1013);
    expect(peakQueued).toBeLessThanOrEqual(LINK_DEFAULTS.maxBufferedBytes + chunk.byteLength);
    expect(slow.bufferedAmount).toBe(0);
    expect(grown).toBeLessThan(32 * MiB);
    // The link and the other stream are untouched.
    expect(link.isOpen).toBe(true);
    await within(pump(fast, 8 * MiB), 30_000, "8 MiB on the fast stream");
    await waitFor(() => fastBytes() >= 8 * MiB, "fast bytes delivered", 30_000);
  });

  it("bounds the link's socket buffer when the peer stops reading the socket at all", async () => {
    child = await spawnLinkNode({ nodeId: "node-b" });
    const edge = await startNode("node-a", { heartbeatMs: 60_000 });
    const link = await edge.pool.get("node-b", child.address);
    const streams = Array.from({ length: 32 }, (_, i) =>
      link.openStream({ agent: "feed", name: `s${i}` }),
    );
    // Every stream gets its window from the owner before it stops.
    await new Promise((resolve) => setTimeout(resolve, 300));
    child.child.kill("SIGSTOP");
    const closed = streams.map((s) => collect(s).closed);
    const chunk = Buffer.alloc(32 * 1024, 3);
    let peakSocket = 0;
    let peakQueued = 0;
    // 32 streams × 2 MiB offered; the peer reads none of it.
    for (let round = 0; round < 64; round++) {
      for (const stream of streams) stream.send(chunk);
      peakSocket = Math.max(peakSocket, link.bufferedAmount);
      peakQueued = Math.max(peakQueued, ...streams.map((s) => s.bufferedAmount));
      await new Promise((resolve) => setImmediate(resolve));
    }
    console.log(
      `peer stopped: peak socket buffer ${peakSocket} B, peak stream queue ${peakQueued} B`,
    );
    // Past the high-water mark data waits in its stream, where the 1013 bound applies.
    expect(peakSocket).toBeLessThanOrEqual(LINK_DEFAULTS.highWaterBytes + 2 * chunk.byteLength);
    expect(peakQueued).toBeLessThanOrEqual(LINK_DEFAULTS.maxBufferedBytes + chunk.byteLength);
    const codes = await within(Promise.all(closed), 10_000, "every stream closed");
    expect(codes.every((c) => c.code === 1013)).toBe(true);
  });
});

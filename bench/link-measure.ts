/**
 * The two measurements of the node-link benchmark, over any way of sending a message and
 * hearing its echo: a client's `ws` socket, a link stream, link requests. Shared by the
 * client (bench/link.ts) and the edge node (bench/link-node.ts).
 */
import { performance } from "node:perf_hooks";
import type WebSocket from "ws";

/** One way of sending a 64-byte message to the owner and hearing the echo. */
export interface Channel {
  send(data: string): void;
  /** The one handler for echoes (replaces the previous one). */
  onReply(handler: () => void): void;
}

const PAYLOAD = "x".repeat(64);

/** A client socket as a channel. */
export function socketChannel(ws: WebSocket): Channel {
  let handler = () => {};
  ws.on("message", () => handler());
  return { send: (data) => ws.send(data), onReply: (h) => (handler = h) };
}

/** `calls` sequential round trips (one in flight); the latencies in ms. */
export async function roundTrips(channel: Channel, calls: number): Promise<Float64Array> {
  const times = new Float64Array(calls);
  let done: () => void = () => {};
  channel.onReply(() => done());
  for (let i = 0; i < calls; i++) {
    const started = performance.now();
    await new Promise<void>((resolve) => {
      done = resolve;
      channel.send(PAYLOAD);
    });
    times[i] = performance.now() - started;
  }
  return times;
}

/** `frames` messages with up to `window` unanswered; frames per second. */
export async function throughput(
  channel: Channel,
  frames: number,
  window: number,
): Promise<number> {
  let sent = 0;
  let received = 0;
  const started = performance.now();
  await new Promise<void>((resolve) => {
    const top = () => {
      while (sent < frames && sent - received < window) {
        channel.send(PAYLOAD);
        sent++;
      }
    };
    channel.onReply(() => {
      received++;
      if (received === frames) resolve();
      else top();
    });
    top();
  });
  return frames / ((performance.now() - started) / 1000);
}

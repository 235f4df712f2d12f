/**
 * `npm run bench:chat`: 100 concurrent chats streaming from the AI SDK's mock model, on
 * Outpost's `AIChatAgent` and on the same stream forwarded over a bare `ws` server (the
 * floor). Reports time to first chunk and chunks per second delivered, median of rounds.
 *
 * Options: `--chats=N` (100), `--rounds=N` (3). Writes bench/results/chat.{json,md}.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { median } from "../stats.js";
import { CHUNK_DELAY_MS, WORDS } from "./model.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const flag = (name: string, fallback: number) => {
  const found = process.argv.find((a) => a.startsWith(`--${name}=`));
  const value = found === undefined ? fallback : Number(found.split("=")[1]);
  if (!Number.isInteger(value) || value < 1)
    throw new Error(`--${name} must be a positive integer`);
  return value;
};
const CHATS = flag("chats", 100);
const ROUNDS = flag("rounds", 3);
const CONTENDERS = ["outpost", "bare"] as const;
type Contender = (typeof CONTENDERS)[number];

interface Round {
  /** Milliseconds from sending the request to the first chunk, per chat. */
  firstChunkMs: number[];
  /** Chunk frames received by all chats, over the time from first send to last `done`. */
  chunksPerSecond: number;
  chunks: number;
  wallMs: number;
}

function startServer(which: Contender): Promise<{ child: ChildProcess; port: number }> {
  // BENCH_NODE_ARGS="--cpu-prof" profiles the servers.
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? "").split(" ").filter((a) => a !== "");
  const child = spawn(
    process.execPath,
    [...nodeArgs, "--import", "tsx", join(ROOT, "bench/chat/server.ts"), which],
    {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (data: Buffer) => {
      out += data.toString();
      const line = out.split("\n").find((l) => l.startsWith("{"));
      if (line) resolve({ child, port: (JSON.parse(line) as { port: number }).port });
    });
    child.once("exit", (code) => reject(new Error(`${which} server exited ${code}`)));
  });
}

function open(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url);
    socket.once("open", () => resolve(socket));
    socket.once("error", reject);
  });
}

async function connectAll(port: number): Promise<WebSocket[]> {
  const sockets = await Promise.all(
    Array.from({ length: CHATS }, (_, i) =>
      open(`ws://127.0.0.1:${port}/agents/bench-chat/chat-${i}`),
    ),
  );
  // Let Outpost's connect frames (identity, transcript) arrive before timing starts.
  await new Promise((resolve) => setTimeout(resolve, 200));
  return sockets;
}

/**
 * One answer per chat, all at once, on sockets kept open across rounds: what is timed is
 * the answers, not instances starting or being evicted.
 */
async function round(sockets: WebSocket[], index: number): Promise<Round> {
  const firstChunkMs: number[] = [];
  let chunks = 0;
  const started = performance.now();
  await Promise.all(
    sockets.map(
      (socket, i) =>
        new Promise<void>((resolve) => {
          const sent = performance.now();
          let first = true;
          const onMessage = (data: Buffer) => {
            const text = data.toString();
            if (!text.includes('"cf_agent_use_chat_response"')) return;
            const frame = JSON.parse(text) as { done: boolean };
            if (frame.done) {
              socket.off("message", onMessage);
              resolve();
              return;
            }
            chunks++;
            if (first) {
              first = false;
              firstChunkMs.push(performance.now() - sent);
            }
          };
          socket.on("message", onMessage);
          const message = {
            id: `u${index}-${i}`,
            role: "user",
            parts: [{ type: "text", text: "hello" }],
          };
          socket.send(
            JSON.stringify({
              type: "cf_agent_use_chat_request",
              id: `r${index}-${i}`,
              init: {
                method: "POST",
                body: JSON.stringify({ messages: [message], trigger: "submit-message" }),
              },
            }),
          );
        }),
    ),
  );
  const wallMs = performance.now() - started;
  return { firstChunkMs, chunksPerSecond: (chunks / wallMs) * 1000, chunks, wallMs };
}

const results: Record<Contender, Round[]> = { outpost: [], bare: [] };
for (const which of CONTENDERS) {
  const { child, port } = await startServer(which);
  try {
    const sockets = await connectAll(port);
    await round(sockets, -1); // warm-up
    for (let r = 0; r < ROUNDS; r++) results[which].push(await round(sockets, r));
    for (const socket of sockets) socket.close();
  } finally {
    child.kill("SIGTERM");
  }
}

const summary = Object.fromEntries(
  CONTENDERS.map((which) => {
    const rounds = results[which];
    return [
      which,
      {
        chunksPerSecond: Math.round(median(rounds.map((r) => r.chunksPerSecond))),
        firstChunkP50Ms: Number(median(rounds.map((r) => median(r.firstChunkMs))).toFixed(1)),
        firstChunkP99Ms: Number(
          median(
            rounds.map(
              (r) =>
                [...r.firstChunkMs].sort((a, b) => a - b)[
                  Math.floor(r.firstChunkMs.length * 0.99)
                ] ?? 0,
            ),
          ).toFixed(1),
        ),
        wallMs: Math.round(median(rounds.map((r) => r.wallMs))),
        chunksPerChat: Math.round(median(rounds.map((r) => r.chunks / CHATS))),
      },
    ];
  }),
) as Record<
  Contender,
  {
    chunksPerSecond: number;
    firstChunkP50Ms: number;
    firstChunkP99Ms: number;
    wallMs: number;
    chunksPerChat: number;
  }
>;

const floorMs = WORDS * CHUNK_DELAY_MS;
const md = [
  `# Chat workload`,
  "",
  `${CHATS} concurrent chats, each one answer of ${WORDS} text deltas ${CHUNK_DELAY_MS} ms apart from the AI SDK's mock model (\`streamText\`, so about ${WORDS + 6} UI chunks per answer); median of ${ROUNDS} rounds after a warm-up. Both servers and the load run on this machine (${new Date().toISOString().slice(0, 10)}).`,
  "",
  "| | chunks/s delivered | first chunk p50 | first chunk p99 | all answers done | chunks per chat |",
  "| --- | --- | --- | --- | --- | --- |",
  ...CONTENDERS.map((which) => {
    const s = summary[which];
    return `| ${which === "outpost" ? "Outpost `AIChatAgent`" : "bare `ws` (floor)"} | ${s.chunksPerSecond} | ${s.firstChunkP50Ms} ms | ${s.firstChunkP99Ms} ms | ${s.wallMs} ms | ${s.chunksPerChat} |`;
  }),
  "",
  `Outpost / floor: chunks/s ×${(summary.outpost.chunksPerSecond / summary.bare.chunksPerSecond).toFixed(2)}, first chunk p50 ×${(summary.outpost.firstChunkP50Ms / summary.bare.firstChunkP50Ms).toFixed(2)}. The model alone needs ${floorMs} ms per answer.`,
  "",
  "Outpost does more per chunk than the floor: it keeps every chunk for resuming and writes them to the instance's SQLite database in batches, and stores the user and assistant messages per turn; the floor stores nothing and cannot resume.",
  "",
].join("\n");
writeFileSync(
  join(ROOT, "bench/results/chat.json"),
  `${JSON.stringify({ chats: CHATS, rounds: ROUNDS, summary, results }, null, 2)}\n`,
);
writeFileSync(join(ROOT, "bench/results/chat.md"), md);
console.log(md);

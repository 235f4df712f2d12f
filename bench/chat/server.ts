/**
 * One contender of the chat workload, in its own process: `outpost` (an `AIChatAgent`,
 * one instance per chat, messages and chunks stored in SQLite) or `bare` (the same AI SDK
 * stream forwarded over a plain `ws` server in the same frames, storing nothing: the floor).
 * Prints `{"port": n}` once listening.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { UIMessage } from "ai";
import { WebSocketServer } from "ws";
import { AIChatAgent, type OnChatMessageOptions } from "../../src/ai-chat/index.js";
import { serve } from "../../src/index.js";
import { answer } from "./model.js";

class BenchChat extends AIChatAgent {
  override async onChatMessage(_onFinish: unknown, options?: OnChatMessageOptions) {
    return (await answer(this.messages, options?.abortSignal)).toUIMessageStreamResponse();
  }
}

async function outpost(): Promise<{ port: number; close(): Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), "outpost-chat-bench-"));
  const server = await serve({
    agents: { BenchChat },
    port: 0,
    hostname: "127.0.0.1",
    dataDir,
    logger: false,
    handleSignals: false,
  });
  return {
    port: server.port,
    async close() {
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function bare(): Promise<{ port: number; close(): Promise<void> }> {
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });
  await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
  wss.on("connection", (socket) => {
    socket.on("message", async (data) => {
      const frame = JSON.parse(String(data)) as { id: string; init: { body: string } };
      const { messages } = JSON.parse(frame.init.body) as { messages: UIMessage[] };
      const result = await answer(messages);
      let seq = 0;
      for await (const chunk of result.toUIMessageStream()) {
        socket.send(
          JSON.stringify({
            type: "cf_agent_use_chat_response",
            id: frame.id,
            body: JSON.stringify(chunk),
            done: false,
            seq: seq++,
          }),
        );
      }
      socket.send(
        JSON.stringify({ type: "cf_agent_use_chat_response", id: frame.id, body: "", done: true }),
      );
    });
  });
  const address = wss.address();
  return {
    port: typeof address === "object" && address !== null ? address.port : 0,
    close: () => new Promise((resolve) => wss.close(() => resolve())),
  };
}

const which = process.argv[2];
const running = which === "bare" ? await bare() : await outpost();
process.stdout.write(`${JSON.stringify({ port: running.port })}\n`);
process.on("SIGTERM", () => {
  running.close().then(() => process.exit(0));
});

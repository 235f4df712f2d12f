import { WebSocketChatTransport } from "agents/chat/transport";
import { afterAll, beforeAll, expect, it } from "vitest";
import WebSocket from "ws";
import { AgentClient } from "../../src/client/index.js";
import { Agent, type Connection } from "../../src/index.js";
import { startServer, type TestServer } from "../helpers/server.js";

/**
 * Answers the chat request frame the way `@cloudflare/ai-chat` does on the wire: one
 * `cf_agent_use_chat_response` per UI-message chunk, then `done`. Or closes the socket when
 * asked, to show the transport ends its stream on the client's `close` event.
 */
class ChatEcho extends Agent {
  override onMessage(connection: Connection, message: string | Buffer) {
    const frame = JSON.parse(String(message)) as {
      type: string;
      id: string;
      init: { body: string };
    };
    if (frame.type !== "cf_agent_use_chat_request") return;
    const { messages } = JSON.parse(frame.init.body) as {
      messages: Array<{ parts: Array<{ text: string }> }>;
    };
    const text = messages.at(-1)!.parts[0]!.text;
    if (text === "hang up") {
      connection.close(1012, "restarting");
      return;
    }
    const chunks = [
      { type: "start", messageId: "m1" },
      { type: "text-start", id: "t1" },
      { type: "text-delta", id: "t1", delta: `echo: ${text}` },
      { type: "text-end", id: "t1" },
      { type: "finish" },
    ];
    for (const chunk of chunks) {
      connection.send(
        JSON.stringify({
          type: "cf_agent_use_chat_response",
          id: frame.id,
          body: JSON.stringify(chunk),
          done: false,
        }),
      );
    }
    connection.send(
      JSON.stringify({ type: "cf_agent_use_chat_response", id: frame.id, body: "", done: true }),
    );
  }
}

let server: TestServer;
beforeAll(async () => {
  server = await startServer({ ChatEcho });
});
afterAll(async () => {
  await server.stop();
});

const userMessage = (text: string) => ({
  id: `u-${text}`,
  role: "user" as const,
  parts: [{ type: "text" as const, text }],
});

async function readAll(stream: ReadableStream<unknown>): Promise<unknown[]> {
  const chunks: unknown[] = [];
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return chunks;
    chunks.push(value);
  }
}

/** Send `text` through the official transport over an Outpost client; all chunks back. */
async function chat(name: string, text: string): Promise<unknown[]> {
  const client = new AgentClient({
    agent: "ChatEcho",
    name,
    host: `127.0.0.1:${server.port}`,
    WebSocket,
    reconnect: { minDelay: 20, maxDelay: 100 },
  });
  try {
    await client.ready;
    const transport = new WebSocketChatTransport({ agent: client });
    const stream = await transport.sendMessages({
      chatId: name,
      messageId: undefined,
      messages: [userMessage(text)],
      trigger: "submit-message",
      abortSignal: undefined,
    });
    return await readAll(stream);
  } finally {
    client.close();
  }
}

it("the official WebSocketChatTransport streams a reply through an Outpost AgentClient", async () => {
  const chunks = await chat("chat-1", "hi");
  expect(chunks).toContainEqual({ type: "text-delta", id: "t1", delta: "echo: hi" });
  expect(chunks.at(-1)).toEqual({ type: "finish" });
});

it("the official WebSocketChatTransport ends its stream when the Outpost client's socket closes", async () => {
  // Without the `close` event the stream would wait for a reply that never comes.
  const chunks = await chat("chat-2", "hang up");
  expect(chunks).toEqual([{ type: "error", errorText: expect.any(String) }]);
});

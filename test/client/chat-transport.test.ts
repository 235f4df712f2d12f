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

it("the official WebSocketChatTransport streams a reply through an Outpost AgentClient", async () => {
  const client = new AgentClient({
    agent: "ChatEcho",
    name: "chat-1",
    host: `127.0.0.1:${server.port}`,
    WebSocket,
  });
  try {
    await client.ready;
    const transport = new WebSocketChatTransport({ agent: client });
    const stream = await transport.sendMessages({
      chatId: "c1",
      messageId: undefined,
      messages: [userMessage("hi")],
      trigger: "submit-message",
      abortSignal: undefined,
    });
    const chunks = await readAll(stream);
    expect(chunks).toContainEqual({ type: "text-delta", id: "t1", delta: "echo: hi" });
    expect(chunks.at(-1)).toEqual({ type: "finish" });
  } finally {
    client.close();
  }
});

it("the official WebSocketChatTransport ends its stream when the Outpost client's socket closes", async () => {
  const client = new AgentClient({
    agent: "ChatEcho",
    name: "chat-2",
    host: `127.0.0.1:${server.port}`,
    WebSocket,
    reconnect: { minDelay: 20, maxDelay: 100 },
  });
  try {
    await client.ready;
    const transport = new WebSocketChatTransport({ agent: client });
    const stream = await transport.sendMessages({
      chatId: "c2",
      messageId: undefined,
      messages: [userMessage("hang up")],
      trigger: "submit-message",
      abortSignal: undefined,
    });
    // Without the `close` event the stream would wait for a reply that never comes.
    const chunks = await readAll(stream);
    expect(chunks).toEqual([{ type: "error", errorText: expect.any(String) }]);
  } finally {
    client.close();
  }
});

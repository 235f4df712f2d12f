import { WebSocketChatTransport } from "agents/chat/transport";
import type { UIMessageChunk } from "ai";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { createKeySet, issueToken, type KeySet, tokenAuth } from "../../src/auth/index.js";
import { AgentClient, type AgentClientOptions, type QueryReason } from "../../src/client/index.js";
import { httpUrl, startServer, type TestServer } from "../helpers/server.js";
import { connect, type Frame, refused } from "../helpers/ws-client.js";
import { responses, SLOW_WORDS, sendChat, TestChat, TOOL_TAIL, userMessage } from "./fixtures.js";

let server: TestServer | undefined;
const clients: AgentClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await server?.stop();
  server = undefined;
});

function chatClient(name: string, options: Partial<AgentClientOptions> = {}): AgentClient {
  const client = new AgentClient({
    agent: "TestChat",
    name,
    host: `127.0.0.1:${server!.port}`,
    WebSocket,
    reconnect: { minDelay: 20, maxDelay: 200 },
    ...options,
  });
  clients.push(client);
  return client;
}

/**
 * What `useAgentChat` does for the transport: hand it the resume handshake frames.
 * (The transport itself only reads the chunks of the streams it owns.)
 */
function routeHandshake(client: AgentClient, transport: WebSocketChatTransport): void {
  client.addEventListener("message", (event: MessageEvent) => {
    if (typeof event.data !== "string") return;
    const frame = JSON.parse(event.data) as { type: string; id: string; probeId?: string };
    if (frame.type === "cf_agent_stream_resuming") transport.handleStreamResuming(frame);
    else if (frame.type === "cf_agent_stream_resume_none") transport.handleStreamResumeNone(frame);
    else if (frame.type === "cf_agent_stream_pending") transport.handleStreamPending();
  });
}

/** Read `stream` to its end (or its error), calling `onChunk` for each chunk. */
async function readAll(
  stream: ReadableStream<UIMessageChunk>,
  onChunk: (chunk: UIMessageChunk) => void = () => {},
): Promise<UIMessageChunk[]> {
  const chunks: UIMessageChunk[] = [];
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return chunks;
      chunks.push(value);
      onChunk(value);
    }
  } catch {
    return chunks;
  }
}

const deltas = (chunks: UIMessageChunk[]) =>
  chunks.flatMap((c) => (c.type === "text-delta" ? [c.delta] : [])).join("");

function send(transport: WebSocketChatTransport, text: string) {
  return transport.sendMessages({
    chatId: "chat",
    messageId: undefined,
    messages: [userMessage(`u-${text}`, text)],
    trigger: "submit-message",
    abortSignal: undefined,
  });
}

async function authServer(): Promise<KeySet> {
  const keys = await createKeySet();
  server = await startServer({ TestChat }, { auth: tokenAuth({ keys, rateLimit: false }) });
  return keys;
}

describe("the official WebSocketChatTransport on outpost/client", () => {
  it("chats over a token scoped to one user's instance; the same token opens no other instance", async () => {
    const keys = await authServer();
    const token = await issueToken(keys, {
      sub: "alice",
      agent: "test-chat",
      name: "alice",
      scope: ["connect", "message"],
    });
    const client = chatClient("alice", { query: { token } });
    await client.ready;
    const transport = new WebSocketChatTransport({ agent: client });
    const chunks = await readAll(await send(transport, "hi"));
    expect(deltas(chunks)).toBe("Hello from the mock");
    expect(chunks.at(-1)?.type).toBe("finish");

    const before = (await (await fetch(httpUrl(server!, "/healthz"))).json()) as {
      instances: number;
    };
    const port = server!.port;
    const other = await refused(`ws://127.0.0.1:${port}/agents/test-chat/bob?token=${token}`);
    expect(other.code).toBe(4003);
    expect(other.received).toEqual([]);
    const after = (await (await fetch(httpUrl(server!, "/healthz"))).json()) as {
      instances: number;
    };
    expect(after.instances).toBe(before.instances);
  });

  it("refuses chat frames from a token without the message scope: no turn runs", async () => {
    const keys = await authServer();
    const token = await issueToken(keys, {
      sub: "carol",
      agent: "test-chat",
      name: "carol",
      scope: ["connect"],
    });
    const client = await connect(
      `ws://127.0.0.1:${server!.port}/agents/test-chat/carol?token=${token}`,
    );
    try {
      sendChat(client, "req-s", [userMessage("u1", "hi")]);
      const refusal = await client.waitFor<Frame>(
        (m) => (m as Frame).type === "outpost_refused",
        "the refusal",
      );
      expect(refusal.action).toBe("message");
      expect(client.frames("cf_agent_use_chat_response")).toEqual([]);
      expect(responses.get("carol")).toBeUndefined();
    } finally {
      await client.close();
    }
  });

  it("serves the history endpoint only with a token for that instance", async () => {
    const keys = await authServer();
    const token = await issueToken(keys, { sub: "alice", agent: "test-chat", name: "alice" });
    const client = chatClient("alice", { query: { token } });
    await client.ready;
    await readAll(await send(new WebSocketChatTransport({ agent: client }), "hi"));
    const url = httpUrl(server!, "/agents/test-chat/alice/get-messages");
    expect((await fetch(url)).status).toBe(401);
    const history = (await (await fetch(`${url}?token=${token}`)).json()) as unknown[];
    expect(history.length).toBe(2);
    const bob = httpUrl(server!, `/agents/test-chat/bob/get-messages?token=${token}`);
    expect((await fetch(bob)).status).toBe(403);
  });

  it("an in-band token refresh while an answer streams does not cut the answer", async () => {
    const keys = await authServer();
    const reasons: QueryReason[] = [];
    let opens = 0;
    const client = chatClient("alice", {
      // Two seconds: the slow answer (about three seconds) outlives the first token.
      query: async ({ reason }) => {
        reasons.push(reason);
        return {
          token: await issueToken(keys, {
            sub: "alice",
            agent: "test-chat",
            name: "alice",
            ttl: 2,
          }),
        };
      },
      onOpen: () => opens++,
    });
    await client.ready;
    const transport = new WebSocketChatTransport({ agent: client });
    const started = Date.now();
    const chunks = await readAll(await send(transport, "slow please"));
    expect(Date.now() - started).toBeGreaterThan(2000);
    expect(deltas(chunks)).toBe(SLOW_WORDS.join(""));
    expect(chunks.at(-1)?.type).toBe("finish");
    expect(reasons).toContain("refresh");
    expect(opens).toBe(1);
  });

  it("resumes a tool continuation after a reconnect without duplicating what was applied (seq de-duplication)", async () => {
    server = await startServer({ TestChat });
    const client = chatClient("resume");
    await client.ready;
    const transport = new WebSocketChatTransport({ agent: client });
    routeHandshake(client, transport);
    const first = await readAll(await send(transport, "delete my report"));
    expect(first.some((c) => c.type === "tool-approval-request")).toBe(true);

    client.send(
      JSON.stringify({
        type: "cf_agent_tool_approval",
        toolCallId: "call-deleteFile",
        approved: true,
        autoContinue: true,
      }),
    );
    transport.expectToolContinuation();
    const continuation = await transport.reconnectToStream({ chatId: "chat" });
    expect(continuation).not.toBeNull();
    let seen = 0;
    let dropped = false;
    const beforeDrop = await readAll(continuation!, (chunk) => {
      if (chunk.type === "text-delta" && ++seen === 3 && !dropped) {
        dropped = true;
        client.reconnect();
      }
    });
    expect(dropped).toBe(true);
    await client.ready;
    const resumed = await transport.reconnectToStream({ chatId: "chat" });
    expect(resumed).not.toBeNull();
    const afterDrop = await readAll(resumed!);

    const all = [...beforeDrop, ...afterDrop];
    expect(deltas(all)).toBe(`The tool said: {"deleted":"/tmp/report.txt"}${TOOL_TAIL.join("")}`);
    expect(all.filter((c) => c.type === "tool-output-available").length).toBe(1);
  });
});

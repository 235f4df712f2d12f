import {
  convertToModelMessages,
  type LanguageModel,
  simulateReadableStream,
  streamText,
  tool,
  type UIMessage,
} from "ai";
import { MockLanguageModelV3 } from "ai/test";
import { afterEach } from "vitest";
import { z } from "zod";
import {
  AIChatAgent,
  type ChatOnFinish,
  type OnChatMessageOptions,
} from "../../src/ai-chat/index.js";
import { type AgentClass, callable, type ServeOptions } from "../../src/index.js";
import { startServer, type TestServer, tempDir, wsUrl } from "../helpers/server.js";
import { connect, type Frame, type RawClient } from "../helpers/ws-client.js";

type StreamResult = Awaited<ReturnType<MockLanguageModelV3["doStream"]>>;
/** One part of a mock model's stream (the provider spec's type, without importing it). */
type LanguageModelV3StreamPart = StreamResult["stream"] extends ReadableStream<infer P> ? P : never;

const usage = {
  inputTokens: { total: 1, noCache: 1, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: 1, text: 1, reasoning: undefined },
};

/** A stack-shaped line the tests look for: it must never reach a client. */
export const SECRET_STACK = "    at secretFunction (/srv/app/secret.js:13:37)";

function text(words: string[]): LanguageModelV3StreamPart[] {
  return [
    { type: "stream-start", warnings: [] },
    { type: "text-start", id: "t1" },
    ...words.map((delta): LanguageModelV3StreamPart => ({ type: "text-delta", id: "t1", delta })),
    { type: "text-end", id: "t1" },
    { type: "finish", finishReason: { unified: "stop", raw: "stop" }, usage },
  ];
}

function toolCall(toolName: string, input: object): LanguageModelV3StreamPart[] {
  return [
    { type: "stream-start", warnings: [] },
    { type: "text-start", id: "t1" },
    { type: "text-delta", id: "t1", delta: `Calling ${toolName}.` },
    { type: "text-end", id: "t1" },
    {
      type: "tool-call",
      toolCallId: `call-${toolName}`,
      toolName,
      input: JSON.stringify(input),
    },
    { type: "finish", finishReason: { unified: "tool-calls", raw: "tool_calls" }, usage },
  ];
}

/** The words of the slow answer, streamed one every `SLOW_DELAY_MS`. */
export const SLOW_WORDS = Array.from({ length: 24 }, (_, i) => `w${i} `);
export const SLOW_DELAY_MS = 120;
/** What the model adds after a tool's result, one word every `TOOL_DELAY_MS`. */
export const TOOL_TAIL = Array.from({ length: 8 }, (_, i) => ` t${i}`);
export const TOOL_DELAY_MS = 60;

/**
 * The AI SDK's mock model, scripted by the last message of the prompt: a tool result is
 * answered with what the tool said; otherwise the user's words pick the script.
 */
export function scriptedModel(delayMs: number): LanguageModel {
  return new MockLanguageModelV3({
    doStream: async ({ prompt }) => {
      const last = prompt.at(-1);
      let parts: LanguageModelV3StreamPart[];
      let chunkDelayInMs = delayMs;
      if (last?.role === "tool") {
        const result = last.content.find((p) => p.type === "tool-result");
        const out = result?.type === "tool-result" ? result.output : undefined;
        const output = JSON.stringify(out?.type === "json" ? out.value : (out?.type ?? "none"));
        // Long enough to reconnect in the middle of it.
        parts = text(["The tool ", "said: ", output, ...TOOL_TAIL]);
        chunkDelayInMs = Math.max(delayMs, TOOL_DELAY_MS);
      } else {
        const said =
          last?.role === "user"
            ? last.content.map((p) => (p.type === "text" ? p.text : "")).join("")
            : "";
        if (said.includes("slow")) {
          parts = text(SLOW_WORDS);
          chunkDelayInMs = SLOW_DELAY_MS;
        } else if (said.includes("explode")) {
          parts = [
            { type: "stream-start", warnings: [] },
            { type: "text-start", id: "t1" },
            { type: "text-delta", id: "t1", delta: "Partial" },
            { type: "error", error: new Error(`model exploded\n${SECRET_STACK}`) },
          ];
        } else if (said.includes("where am i")) {
          parts = toolCall("getLocation", {});
        } else if (said.includes("delete")) {
          parts = toolCall("deleteFile", { path: "/tmp/report.txt" });
        } else {
          parts = text(["Hello", " from", " the", " mock"]);
        }
      }
      return { stream: simulateReadableStream({ chunks: parts, chunkDelayInMs }) };
    },
  });
}

/** Every test chat agent's tools: one the client runs, one the server runs after approval. */
export const chatTools = {
  getLocation: tool({
    description: "Where the user is; the browser answers.",
    inputSchema: z.object({}),
  }),
  deleteFile: tool({
    description: "Delete a file, once the user approves.",
    inputSchema: z.object({ path: z.string() }),
    needsApproval: true,
    execute: async ({ path }) => ({ deleted: path }),
  }),
};

/** Turns seen by `onChatResponse`, per instance name, for tests to inspect. */
export const responses = new Map<string, Array<{ status: string; text: string }>>();

/** The `body` each turn's `onChatMessage` got, per instance name, for tests to inspect. */
export const bodies = new Map<string, Array<Record<string, unknown> | undefined>>();

/** The chat agent of the tests: the mock model, the two tools, and two ways to fail. */
export class TestChat extends AIChatAgent {
  static delayMs = 15;

  override async onChatMessage(onFinish: ChatOnFinish, options?: OnChatMessageOptions) {
    bodies.set(this.name, [...(bodies.get(this.name) ?? []), options?.body]);
    const last = this.messages.at(-1);
    const said = last?.parts.map((p) => (p.type === "text" ? p.text : "")).join("") ?? "";
    if (said.includes("throw")) throw new Error(`onChatMessage failed\n${SECRET_STACK}`);
    if (said.includes("plain")) return new Response("plain text answer");
    const result = streamText({
      model: scriptedModel(TestChat.delayMs),
      messages: await convertToModelMessages(this.messages),
      tools: chatTools,
      abortSignal: options?.abortSignal,
      onFinish,
      // The model's scripted error is expected; it reaches the client as a frame.
      onError: () => {},
    });
    return result.toUIMessageStreamResponse({
      onError: (error) => (error instanceof Error ? error.message.split("\n")[0]! : "error"),
    });
  }

  override onChatResponse(result: { status: string; message: UIMessage }) {
    const list = responses.get(this.name) ?? [];
    list.push({ status: result.status, text: textOf(result.message) });
    responses.set(this.name, list);
  }
}

/** A chat agent that starts turns itself, through `saveMessages`, and keeps 4 messages. */
export class SavingChat extends TestChat {
  override maxPersistedMessages = 4;

  @callable()
  async ask(text: string) {
    return this.saveMessages((current) => [...current, userMessage(`s-${current.length}`, text)]);
  }
}

/** The text parts of a message, joined. */
export function textOf(message: UIMessage | undefined): string {
  return (message?.parts ?? []).map((p) => (p.type === "text" ? p.text : "")).join("");
}

/** A user message as the official client sends it. */
export function userMessage(id: string, words: string): UIMessage {
  return { id, role: "user", parts: [{ type: "text", text: words }] };
}

/** Send a chat request frame the way `WebSocketChatTransport` does. */
export function sendChat(client: RawClient, id: string, messages: UIMessage[], extra = {}): void {
  client.send({
    type: "cf_agent_use_chat_request",
    id,
    init: {
      method: "POST",
      body: JSON.stringify({ messages, trigger: "submit-message", ...extra }),
    },
  });
}

/** `cf_agent_use_chat_response` frames of request `id`. */
export function responseFrames(client: RawClient, id: string): Frame[] {
  return client.frames("cf_agent_use_chat_response").filter((f) => f.id === id);
}

/** Wait for the terminal (`done`) frame of request `id`. */
export function waitDone(client: RawClient, id: string, timeoutMs = 15_000): Promise<Frame> {
  return client.waitFor<Frame>(
    (m) =>
      typeof m === "object" &&
      !Buffer.isBuffer(m) &&
      m.type === "cf_agent_use_chat_response" &&
      m.id === id &&
      m.done === true,
    `done of ${id}`,
    timeoutMs,
  );
}

/** Text the chunk bodies of `frames` spell, in order. */
export function streamedText(frames: Frame[]): string {
  let out = "";
  for (const frame of frames) {
    if (typeof frame.body !== "string" || frame.body === "" || frame.error === true) continue;
    const chunk = JSON.parse(frame.body) as { type: string; delta?: string };
    if (chunk.type === "text-delta") out += chunk.delta ?? "";
  }
  return out;
}

/** The server and raw clients of one test file's current test; all closed after each test. */
export interface ChatHarness {
  /** The test's server, once `start` has run. */
  readonly server: TestServer;
  clients: RawClient[];
  /** Start the test's server of `agents` (TestChat unless given) on the test's data directory. */
  start(agents?: Record<string, AgentClass>, options?: Partial<ServeOptions>): Promise<TestServer>;
  /**
   * Close the test's clients, stop its server and start it again on the same data
   * directory, with the same agents and `options`: what a restart keeps.
   */
  restart(options?: Partial<ServeOptions>): Promise<TestServer>;
  /** A raw client of `/agents/<agent>/<name>`, once its transcript has arrived. */
  open(name: string, agent?: string): Promise<RawClient>;
}

/** Set up a `ChatHarness` for the calling test file. */
export function chatHarness(): ChatHarness {
  let data: { dir: string; remove(): void } | undefined;
  let server: TestServer | undefined;
  let started: Record<string, AgentClass> = {};
  const closeClients = async () => {
    for (const client of harness.clients.splice(0)) await client.close();
  };
  const harness: ChatHarness = {
    get server() {
      if (server === undefined) throw new Error("the test has not started its server");
      return server;
    },
    clients: [],
    async start(agents = { TestChat }, options = {}) {
      data ??= tempDir();
      started = agents;
      server = await startServer(agents, { ...options, dataDir: data.dir });
      return server;
    },
    async restart(options = {}) {
      await closeClients();
      await server?.stop();
      server = undefined;
      return harness.start(started, options);
    },
    async open(name, agent = "test-chat") {
      const client = await connect(wsUrl(harness.server, `/agents/${agent}/${name}`));
      harness.clients.push(client);
      // The transcript follows the identity frame; it marks the chat handshake as done.
      await client.waitFor((m) => (m as Frame).type === "cf_agent_chat_messages", "the transcript");
      return client;
    },
  };
  afterEach(async () => {
    await closeClients();
    await server?.stop();
    server = undefined;
    data?.remove();
    data = undefined;
  });
  return harness;
}

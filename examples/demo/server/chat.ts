import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import {
  convertToModelMessages,
  type LanguageModel,
  simulateReadableStream,
  stepCountIs,
  streamText,
  tool,
} from "ai";
import { AIChatAgent, type ChatOnFinish, type OnChatMessageOptions } from "outpost/ai-chat";
import { z } from "zod";

/** What the page shows about the model answering, so an offline answer is never mistaken. */
export interface DemoChatState {
  model: string;
  offline: boolean;
}

type ModelV3 = Extract<Exclude<LanguageModel, string>, { specificationVersion: "v3" }>;
type StreamPart =
  Awaited<ReturnType<ModelV3["doStream"]>>["stream"] extends ReadableStream<infer P> ? P : never;

const usage = {
  inputTokens: { total: 0, noCache: 0, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: 0, text: 0, reasoning: undefined },
};

/**
 * A model that needs no network: it describes the conversation back, word by word, and
 * rolls a die with the `rollDice` tool when asked to. It exists so `npm start` works on a
 * machine without a model; the page labels its answers as offline.
 */
function offlineModel(): ModelV3 {
  const words = (text: string): StreamPart[] => [
    { type: "stream-start", warnings: [] },
    { type: "text-start", id: "t" },
    ...text.split(/(?<= )/).map((delta): StreamPart => ({ type: "text-delta", id: "t", delta })),
    { type: "text-end", id: "t" },
    { type: "finish", finishReason: { unified: "stop", raw: "stop" }, usage },
  ];
  return {
    specificationVersion: "v3",
    provider: "outpost-demo",
    modelId: "offline",
    supportedUrls: {},
    async doGenerate() {
      throw new Error("the offline model only streams");
    },
    async doStream({ prompt }) {
      const last = prompt.at(-1);
      const userTurns = prompt.filter((m) => m.role === "user");
      let parts: StreamPart[];
      if (last?.role === "tool") {
        const result = last.content.find((p) => p.type === "tool-result");
        const output = result?.type === "tool-result" ? result.output : undefined;
        const value = output?.type === "json" ? JSON.stringify(output.value) : "nothing";
        parts = words(`The die says ${value}. Ask again to roll once more.`);
      } else {
        const said =
          last?.role === "user"
            ? last.content.map((p) => (p.type === "text" ? p.text : "")).join(" ")
            : "";
        if (/\b(roll|dice|die)\b/i.test(said)) {
          parts = [
            { type: "stream-start", warnings: [] },
            {
              type: "tool-call",
              toolCallId: `roll-${Date.now()}`,
              toolName: "rollDice",
              input: "{}",
            },
            { type: "finish", finishReason: { unified: "tool-calls", raw: "tool_calls" }, usage },
          ];
        } else {
          const count = said.trim() === "" ? 0 : said.trim().split(/\s+/).length;
          parts = words(
            `I am the offline demo model, so I can only describe this conversation. ` +
              `It has ${userTurns.length} message${userTurns.length === 1 ? "" : "s"} from you; ` +
              `the last one has ${count} word${count === 1 ? "" : "s"} and says: "${said.slice(0, 200)}". ` +
              `Ask me to roll a die to see a tool call. ` +
              `Each word arrives on its own, so you can reload the page mid-answer and watch it resume.`,
          );
        }
      }
      return { stream: simulateReadableStream({ chunks: parts, chunkDelayInMs: 90 }) };
    },
  };
}

/** The configured model: an OpenAI-compatible endpoint when `OPENAI_BASE_URL` is set. */
function chooseModel(env: NodeJS.ProcessEnv): { model: LanguageModel; state: DemoChatState } {
  const baseURL = env.OPENAI_BASE_URL;
  if (baseURL !== undefined && baseURL !== "") {
    const modelId = env.OPENAI_MODEL ?? "llama3.2";
    const provider = createOpenAICompatible({
      name: "openai-compatible",
      baseURL,
      ...(env.OPENAI_API_KEY !== undefined && { apiKey: env.OPENAI_API_KEY }),
    });
    return { model: provider(modelId), state: { model: modelId, offline: false } };
  }
  return { model: offlineModel(), state: { model: "offline demo model", offline: true } };
}

const tools = {
  rollDice: tool({
    description: "Roll a six-sided die.",
    inputSchema: z.object({}),
    execute: async () => ({ rolled: 1 + Math.floor(Math.random() * 6) }),
  }),
};

/**
 * One chat per signed-in user: the instance name is the user, and the token the app signs
 * names only that instance, so nobody reads another user's chat.
 */
export class DemoChat extends AIChatAgent<unknown, DemoChatState> {
  readonly #choice = chooseModel(process.env);

  override onStart() {
    this.setState(this.#choice.state);
  }

  override async onChatMessage(onFinish: ChatOnFinish, options?: OnChatMessageOptions) {
    const result = streamText({
      model: this.#choice.model,
      system: "You are a helpful assistant in the Outpost demo. Keep answers short.",
      messages: await convertToModelMessages(this.messages),
      tools,
      stopWhen: stepCountIs(3),
      abortSignal: options?.abortSignal,
      onFinish,
    });
    return result.toUIMessageStreamResponse({
      // The client sees the first line of a model error, never its stack.
      onError: (error) => (error instanceof Error ? error.message.split("\n")[0]! : "model error"),
    });
  }
}

import { convertToModelMessages, simulateReadableStream, streamText, type UIMessage } from "ai";
import { MockLanguageModelV3 } from "ai/test";

/** Chunks per answer and the model's delay between them. */
export const WORDS = 50;
export const CHUNK_DELAY_MS = 10;

const usage = {
  inputTokens: { total: 1, noCache: 1, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: WORDS, text: WORDS, reasoning: undefined },
};

/** The same scripted model for both servers: `WORDS` text deltas, `CHUNK_DELAY_MS` apart. */
function model() {
  return new MockLanguageModelV3({
    doStream: async () => ({
      stream: simulateReadableStream({
        chunkDelayInMs: CHUNK_DELAY_MS,
        chunks: [
          { type: "stream-start" as const, warnings: [] },
          { type: "text-start" as const, id: "t" },
          ...Array.from({ length: WORDS }, (_, i) => ({
            type: "text-delta" as const,
            id: "t",
            delta: `word${i} `,
          })),
          { type: "text-end" as const, id: "t" },
          {
            type: "finish" as const,
            finishReason: { unified: "stop" as const, raw: "stop" },
            usage,
          },
        ],
      }),
    }),
  });
}

/** The AI SDK stream both servers serve: `streamText` over the scripted model. */
export async function answer(messages: UIMessage[], abortSignal?: AbortSignal) {
  return streamText({
    model: model(),
    messages: await convertToModelMessages(messages),
    abortSignal,
  });
}

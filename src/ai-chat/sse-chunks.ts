import type { UIMessageChunk } from "ai";
import { createParser } from "eventsource-parser";

/** Reads chunks one at a time, like a stream reader, and can be cancelled. */
export interface ChunkSource {
  read(): Promise<{ done: true; value?: undefined } | { done: false; value: UIMessageChunk }>;
  cancel(): void;
}

/**
 * The UI message chunks of an SSE body (`toUIMessageStreamResponse()`), parsed by
 * `eventsource-parser` straight from the body's reader. No extra stream stages and no
 * schema check per chunk: the body comes from the agent's own `onChatMessage`, and on a
 * hundred concurrent answers the stages and checks cost more than the model's pace (a
 * `data:` that is not JSON is skipped, as the official agent skips it).
 */
export function sseChunks(body: ReadableStream<Uint8Array>): ChunkSource {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const queue: UIMessageChunk[] = [];
  const parser = createParser({
    onEvent(event) {
      if (event.data === "[DONE]") return;
      try {
        queue.push(JSON.parse(event.data) as UIMessageChunk);
      } catch {
        // Not a chunk.
      }
    },
  });
  return {
    async read() {
      while (queue.length === 0) {
        const { done, value } = await reader.read();
        if (done) {
          parser.feed(decoder.decode());
          if (queue.length === 0) return { done: true };
          break;
        }
        parser.feed(decoder.decode(value, { stream: true }));
      }
      return { done: false, value: queue.shift()! };
    },
    cancel() {
      reader.cancel().catch(() => {});
    },
  };
}

import { readUIMessageStream, type UIMessage, type UIMessageChunk } from "ai";
import { publicMessage } from "../agent/instance.js";
import type { ChatTurnOutcome } from "./protocol.js";
import { type ChunkSource, sseChunks } from "./sse-chunks.js";

/** Where `streamReply` sends what it reads. */
export interface ReplySink {
  /** One chunk, already JSON-encoded. */
  chunk(body: string): void;
  /** The model reported an error mid-answer (an `error` chunk). */
  modelError(errorText: string): void;
}

/** How one answer went, and what it built. */
export interface ReplyResult {
  outcome: Exclude<ChatTurnOutcome, "skipped">;
  /** The error text the client was shown, for `error`. */
  error?: string;
  /** `true` when the error was thrown (not an `error` chunk): no error frame went out yet. */
  thrown?: boolean;
  /** The assistant message the chunks built (empty `parts` when nothing arrived). */
  message: UIMessage;
}

/**
 * Read an AI SDK response (a UI message stream over SSE, or plain text) chunk by chunk,
 * handing each to `sink` as it arrives, until it ends, fails or `signal` aborts. The
 * assistant message is then built from the chunks by the AI SDK itself
 * (`readUIMessageStream`), continuing `base` for a continuation.
 */
export async function streamReply(options: {
  response: Response;
  messageId: string;
  base: UIMessage | undefined;
  signal: AbortSignal;
  sink: ReplySink;
}): Promise<ReplyResult> {
  const { response, messageId, base, signal, sink } = options;
  const continuation = base !== undefined;
  const chunks: UIMessageChunk[] = [];
  let outcome: ReplyResult["outcome"] = "completed";
  let error: string | undefined;
  let thrown = false;

  const body = response.body;
  if (body !== null) {
    const isSse = (response.headers.get("content-type") ?? "").includes("text/event-stream");
    const reader = isSse ? sseChunks(body) : streamSource(textChunks(body, messageId));
    const cancel = () => reader.cancel();
    signal.addEventListener("abort", cancel, { once: true });
    try {
      while (!signal.aborted) {
        const { done, value } = await reader.read();
        if (done) break;
        if (value.type === "error") {
          outcome = "error";
          error = value.errorText;
          sink.modelError(value.errorText);
          cancel();
          break;
        }
        const chunk = forClient(value, messageId, continuation);
        chunks.push(chunk);
        sink.chunk(JSON.stringify(chunk));
      }
      if (signal.aborted && outcome === "completed") outcome = "aborted";
    } catch (failure) {
      if (signal.aborted) outcome = "aborted";
      else {
        outcome = "error";
        error = publicMessage(failure);
        thrown = true;
      }
    } finally {
      signal.removeEventListener("abort", cancel);
    }
  }
  return { outcome, error, thrown, message: await buildMessage(chunks, messageId, base) };
}

/**
 * The chunk as clients get it: a new answer's `start` names the server's message id (so
 * every client and the stored history agree on it); a continuation's `start` names none
 * (it appends to the message the client already has).
 */
function forClient(
  chunk: UIMessageChunk,
  messageId: string,
  continuation: boolean,
): UIMessageChunk {
  if (chunk.type !== "start") return chunk;
  if (continuation) {
    const { messageId: _dropped, ...rest } = chunk;
    return rest;
  }
  return chunk.messageId === undefined ? { ...chunk, messageId } : chunk;
}

/** Build the assistant message from `chunks`; malformed chunks are skipped, not fatal. */
export async function buildMessage(
  chunks: readonly UIMessageChunk[],
  messageId: string,
  base: UIMessage | undefined,
): Promise<UIMessage> {
  const start: UIMessage = base ?? { id: messageId, role: "assistant", parts: [] };
  const stream = new ReadableStream<UIMessageChunk>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
  let message: UIMessage = structuredClone(start);
  try {
    for await (const snapshot of readUIMessageStream({
      message: start,
      stream,
      onError: () => {},
    })) {
      message = snapshot;
    }
  } catch {
    // What was built before a chunk the SDK refused is still the best account of the answer.
  }
  if (message.id === undefined || message.id === "") message = { ...message, id: messageId };
  return message;
}

/** Chunk bodies (as stored) back into chunks, skipping any that do not parse. */
export function parseStoredChunks(bodies: readonly string[]): UIMessageChunk[] {
  const chunks: UIMessageChunk[] = [];
  for (const body of bodies) {
    try {
      chunks.push(JSON.parse(body) as UIMessageChunk);
    } catch {
      // A damaged row loses one chunk, not the answer.
    }
  }
  return chunks;
}

/** A stream of chunks as a `ChunkSource`. */
function streamSource(stream: ReadableStream<UIMessageChunk>): ChunkSource {
  const reader = stream.getReader();
  return {
    read: () => reader.read() as ReturnType<ChunkSource["read"]>,
    cancel: () => void reader.cancel().catch(() => {}),
  };
}

/** A plain-text response becomes one text part, as the official agent does. */
function textChunks(body: ReadableStream<Uint8Array>, id: string): ReadableStream<UIMessageChunk> {
  return body
    .pipeThrough(new TextDecoderStream() as unknown as TransformStream<Uint8Array, string>)
    .pipeThrough(
      new TransformStream<string, UIMessageChunk>({
        start(controller) {
          controller.enqueue({ type: "text-start", id });
        },
        transform(text, controller) {
          if (text.length > 0) controller.enqueue({ type: "text-delta", id, delta: text });
        },
        flush(controller) {
          controller.enqueue({ type: "text-end", id });
        },
      }),
    );
}

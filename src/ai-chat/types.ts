import type { ToolSet, UIMessage } from "ai";
import type { ClientToolSchema } from "./protocol.js";

/** What `onChatMessage` is told about the turn it answers. */
export interface OnChatMessageOptions {
  /** The request id: the client's for a sent message, the server's for a continuation. */
  requestId: string;
  /** Aborted when the client cancels the answer (or the chat is cleared). */
  abortSignal?: AbortSignal;
  /** Schemas of the tools the client runs itself, as the client sent them. */
  clientTools?: ClientToolSchema[];
  /** Extra fields of the request body (everything but `messages`, `clientTools`, `trigger`). */
  body?: Record<string, unknown>;
  /** This turn continues the last assistant message (after a tool result or approval). */
  continuation?: boolean;
}

/** How a turn ended, passed to `onChatResponse` once its message is persisted. */
export interface ChatResponseResult {
  message: UIMessage;
  requestId: string;
  continuation: boolean;
  status: "completed" | "error" | "aborted";
  error?: string;
}

/** What `saveMessages` resolves to. */
export interface SaveMessagesResult {
  requestId: string;
  status: "completed" | "error" | "skipped" | "aborted";
  error?: string;
}

/** The AI SDK's `onFinish` callback type, kept loose so any `streamText` accepts it. */
// biome-ignore lint/suspicious/noExplicitAny: matches GenerateTextOnFinishCallback<ToolSet> of any AI SDK minor.
export type ChatOnFinish<_Tools extends ToolSet = ToolSet> = (event: any) => void | Promise<void>;

import type { UIMessage } from "ai";

/**
 * The chat frames of `@cloudflare/ai-chat`, by their wire names. Values match the official
 * `MessageType` enum, so code that compares against it keeps working.
 */
export enum MessageType {
  CF_AGENT_CHAT_MESSAGES = "cf_agent_chat_messages",
  CF_AGENT_USE_CHAT_REQUEST = "cf_agent_use_chat_request",
  CF_AGENT_USE_CHAT_RESPONSE = "cf_agent_use_chat_response",
  CF_AGENT_CHAT_CLEAR = "cf_agent_chat_clear",
  CF_AGENT_CHAT_REQUEST_CANCEL = "cf_agent_chat_request_cancel",
  CF_AGENT_STREAM_RESUMING = "cf_agent_stream_resuming",
  CF_AGENT_STREAM_RESUME_ACK = "cf_agent_stream_resume_ack",
  CF_AGENT_STREAM_RESUME_REQUEST = "cf_agent_stream_resume_request",
  CF_AGENT_STREAM_RESUME_NONE = "cf_agent_stream_resume_none",
  CF_AGENT_STREAM_PENDING = "cf_agent_stream_pending",
  CF_AGENT_TOOL_RESULT = "cf_agent_tool_result",
  CF_AGENT_MESSAGE_UPDATED = "cf_agent_message_updated",
  CF_AGENT_TOOL_APPROVAL = "cf_agent_tool_approval",
}

/** How a chat request ended, on its terminal `done` frame. */
export type ChatTurnOutcome = "completed" | "error" | "aborted" | "skipped";

/** One `cf_agent_use_chat_response` frame: a chunk of an answer, or its end. */
export interface ChatResponseFrame {
  type: MessageType.CF_AGENT_USE_CHAT_RESPONSE;
  id: string;
  /** A JSON-encoded AI SDK `UIMessageChunk`, the error text, or `""`. */
  body: string;
  done: boolean;
  error?: boolean;
  continuation?: boolean;
  replay?: boolean;
  replayComplete?: boolean;
  /** Index of the chunk in its stream; the same live and replayed. */
  seq?: number;
  messageIds?: string[];
  outcome?: ChatTurnOutcome;
}

/** A tool schema sent by the client for tools it runs itself. */
export interface ClientToolSchema {
  name: string;
  description?: string;
  parameters?: Record<string, unknown>;
}

/** A chat frame from a client, parsed and checked. */
export type ChatClientEvent =
  | { type: "chat-request"; id: string; body: string | undefined }
  | { type: "clear" }
  | { type: "messages"; messages: UIMessage[] }
  | { type: "cancel"; id: string }
  | { type: "resume-request"; probeId: string | undefined }
  | { type: "resume-ack"; id: string }
  | {
      type: "tool-result";
      toolCallId: string;
      toolName: string;
      output: unknown;
      state: "output-available" | "output-error" | undefined;
      errorText: string | undefined;
      autoContinue: boolean;
      clientTools: ClientToolSchema[] | undefined;
    }
  | { type: "tool-approval"; toolCallId: string; approved: boolean; autoContinue: boolean };

const isString = (value: unknown): value is string => typeof value === "string";

/**
 * Read a text frame as a chat frame. `undefined` for anything else (including malformed
 * chat frames), which then goes to the agent's own `onMessage`.
 */
export function parseChatFrame(text: string): ChatClientEvent | undefined {
  // Cheap test first: most frames of a non-chat agent never reach JSON.parse here.
  if (!text.includes('"cf_agent_')) return undefined;
  let frame: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return undefined;
    frame = parsed as Record<string, unknown>;
  } catch {
    return undefined;
  }
  switch (frame.type) {
    case MessageType.CF_AGENT_USE_CHAT_REQUEST: {
      const init = frame.init as Record<string, unknown> | undefined;
      if (!isString(frame.id) || init === null || typeof init !== "object") return undefined;
      if (init.method !== undefined && init.method !== "POST") return undefined;
      return {
        type: "chat-request",
        id: frame.id,
        body: isString(init.body) ? init.body : undefined,
      };
    }
    case MessageType.CF_AGENT_CHAT_CLEAR:
      return { type: "clear" };
    case MessageType.CF_AGENT_CHAT_MESSAGES:
      return Array.isArray(frame.messages)
        ? { type: "messages", messages: frame.messages as UIMessage[] }
        : undefined;
    case MessageType.CF_AGENT_CHAT_REQUEST_CANCEL:
      return isString(frame.id) ? { type: "cancel", id: frame.id } : undefined;
    case MessageType.CF_AGENT_STREAM_RESUME_REQUEST:
      return {
        type: "resume-request",
        probeId: isString(frame.probeId) ? frame.probeId : undefined,
      };
    case MessageType.CF_AGENT_STREAM_RESUME_ACK:
      return isString(frame.id) ? { type: "resume-ack", id: frame.id } : undefined;
    case MessageType.CF_AGENT_TOOL_RESULT:
      if (!isString(frame.toolCallId)) return undefined;
      return {
        type: "tool-result",
        toolCallId: frame.toolCallId,
        toolName: isString(frame.toolName) ? frame.toolName : "",
        output: frame.output,
        state:
          frame.state === "output-error" || frame.state === "output-available"
            ? frame.state
            : undefined,
        errorText: isString(frame.errorText) ? frame.errorText : undefined,
        autoContinue: frame.autoContinue === true,
        clientTools: Array.isArray(frame.clientTools)
          ? (frame.clientTools as ClientToolSchema[])
          : undefined,
      };
    case MessageType.CF_AGENT_TOOL_APPROVAL:
      if (!isString(frame.toolCallId) || typeof frame.approved !== "boolean") return undefined;
      return {
        type: "tool-approval",
        toolCallId: frame.toolCallId,
        approved: frame.approved,
        autoContinue: frame.autoContinue === true,
      };
    default:
      return undefined;
  }
}

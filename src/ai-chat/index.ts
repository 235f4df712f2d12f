export {
  AIChatAgent,
  type ChatOnFinish,
  type ChatResponseResult,
  type OnChatMessageOptions,
  type SaveMessagesResult,
} from "./ai-chat-agent.js";
export {
  type ChatClientEvent,
  type ChatResponseFrame,
  type ChatTurnOutcome,
  type ClientToolSchema,
  MessageType,
} from "./protocol.js";

export { AIChatAgent } from "./ai-chat-agent.js";
export {
  type ChatClientEvent,
  type ChatResponseFrame,
  type ChatTurnOutcome,
  type ClientToolSchema,
  MessageType,
} from "./protocol.js";
export type {
  ChatOnFinish,
  ChatResponseResult,
  OnChatMessageOptions,
  SaveMessagesResult,
} from "./types.js";

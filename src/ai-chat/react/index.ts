export {
  type UseAgentChatOptions,
  type UseAgentChatResult,
  useAgentChat,
} from "./use-agent-chat.js";

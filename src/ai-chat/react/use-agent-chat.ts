import {
  type UseAgentChatOptions as OfficialOptions,
  useAgentChat as useOfficialAgentChat,
} from "@cloudflare/ai-chat/react";
import type { UIMessage } from "ai";
import type { UseAgentResult } from "../../react/index.js";
import { chatConnection } from "./chat-connection.js";

/**
 * Options of `useAgentChat`: the official hook's, with `agent` the result of
 * `outpost/react`'s `useAgent`.
 */
export type UseAgentChatOptions<State = unknown, ChatMessage extends UIMessage = UIMessage> = Omit<
  OfficialOptions<State, ChatMessage>,
  "agent"
> & {
  // biome-ignore lint/suspicious/noExplicitAny: any agent state; the chat does not read it.
  agent: UseAgentResult<any>;
};

/** What `useAgentChat` returns: exactly what the official hook returns. */
export type UseAgentChatResult<
  State = unknown,
  ChatMessage extends UIMessage = UIMessage,
> = ReturnType<typeof useOfficialAgentChat<State, ChatMessage>>;

/**
 * `useAgentChat` of `@cloudflare/ai-chat/react`, on an Outpost connection: the official
 * hook runs unchanged (streaming, resume after reconnect, tools, approvals, cancel, clear)
 * over the socket `useAgent` opened, with its token, refresh and reconnect handling. The
 * history comes from the transcript the server sends when it accepts the connection (no
 * HTTP request, so no second place for the token); pass `getInitialMessages` to load it
 * another way (for instance from the `get-messages` endpoint) before the first render.
 *
 * @example
 * const agent = useAgent({ agent: "chat", name: user.id, query: async () => ({ token: await getToken() }) });
 * const { messages, sendMessage, status, stop, clearHistory } = useAgentChat({ agent });
 */
export function useAgentChat<State = unknown, ChatMessage extends UIMessage = UIMessage>(
  options: UseAgentChatOptions<State, ChatMessage>,
): UseAgentChatResult<State, ChatMessage> {
  const connection = chatConnection(options.agent.client);
  return useOfficialAgentChat<State, ChatMessage>({
    ...options,
    agent: connection,
    // The server sends the conversation when it accepts the connection; waiting for it in
    // render would suspend before `useAgent`'s effect has opened the socket.
    getInitialMessages:
      options.getInitialMessages === undefined ? null : options.getInitialMessages,
  } as OfficialOptions<State, ChatMessage>);
}

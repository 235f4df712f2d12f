import type { UIMessage } from "ai";
import { useAgentChat } from "outpost/ai-chat/react";
import { useAgent } from "outpost/react";
import { Suspense, useCallback, useState } from "react";
import type { DemoChatState } from "../../server/chat.js";
import { AGENT_HOST } from "../api.js";
import { Conversation } from "../Conversation.js";

/** A token for the signed-in user's own chat: the identity provider names that instance. */
async function getChatToken(): Promise<{ token: string; name: string }> {
  const res = await fetch("/api/chat-token", { credentials: "same-origin" });
  if (!res.ok) throw new Error(`/api/chat-token: ${res.status}`);
  return (await res.json()) as { token: string; name: string };
}

function partText(part: UIMessage["parts"][number]): string {
  if (part.type === "text") return part.text;
  if (part.type.startsWith("tool-")) {
    const call = part as { type: string; state: string; output?: unknown };
    const output = call.state === "output-available" ? ` → ${JSON.stringify(call.output)}` : "";
    return `[${call.type.slice(5)}${output}]`;
  }
  return "";
}

function Chat({ user }: { user: string }) {
  const query = useCallback(async () => ({ token: (await getChatToken()).token }), []);
  const agent = useAgent<DemoChatState>({
    agent: "demo-chat",
    // The token names this instance; any other name would be refused with 4003.
    name: user,
    host: AGENT_HOST,
    query,
  });
  const { messages, sendMessage, status, stop, clearHistory } = useAgentChat({ agent });
  const model = agent.state;
  const busy = status === "submitted" || status === "streaming";
  return (
    <section className="panel" data-testid="panel-chat">
      <header>
        <h2>AI chat</h2>
        <span className={`status status-${agent.status.state}`} data-testid="chat-status">
          {busy ? "answering" : agent.status.state}
        </span>
      </header>
      <div className="intro">
        <code>AIChatAgent</code> and <code>useAgentChat</code> from <code>outpost/ai-chat</code>:
        your own chat, behind a token that names only your instance. Answers stream; reload the page
        mid-answer and it resumes; the history survives a restart of the agent server.
        <p data-testid="chat-model">
          Model:{" "}
          {model?.offline ? (
            <b className="offline">offline demo model (no AI: it describes the conversation)</b>
          ) : (
            <b>{model?.model ?? "…"}</b>
          )}
        </p>
      </div>
      <Conversation
        testId="chat-messages"
        lines={messages.map((message) => ({
          key: message.id,
          role: message.role,
          who: message.role === "user" ? "you" : "assistant",
          body: (
            <span data-testid={`chat-${message.role}`}>{message.parts.map(partText).join("")}</span>
          ),
        }))}
        empty={{ text: "Ask something." }}
        onSend={(text) => void sendMessage({ text })}
        placeholder="Ask the model"
        inputTestId="chat-input"
        sendTestId="chat-send"
        busy={busy}
        actions={
          <>
            <button type="button" data-testid="chat-stop" disabled={!busy} onClick={() => stop()}>
              Stop
            </button>
            <button type="button" data-testid="chat-clear" onClick={() => clearHistory()}>
              Clear
            </button>
          </>
        }
      />
    </section>
  );
}

const OPEN_KEY = "outpost-demo-chat-open";

/**
 * The chat panel: one `AIChatAgent` instance per signed-in user. It opens on request (and
 * stays open across reloads), so the room panels' sockets are the only ones until then.
 */
export function ChatPanel({ user }: { user: string }) {
  const [open, setOpen] = useState(() => localStorage.getItem(OPEN_KEY) === "1");
  if (!open) {
    return (
      <section className="panel" data-testid="panel-chat">
        <header>
          <h2>AI chat</h2>
        </header>
        <div className="intro">
          A chat with a model, on <code>AIChatAgent</code> and <code>useAgentChat</code>: your own
          instance, resumable answers, history that survives restarts.
        </div>
        <button
          type="button"
          data-testid="chat-open"
          onClick={() => {
            localStorage.setItem(OPEN_KEY, "1");
            setOpen(true);
          }}
        >
          Open the AI chat
        </button>
      </section>
    );
  }
  return (
    <Suspense fallback={<div className="panel">Authenticating...</div>}>
      <Chat user={user} />
    </Suspense>
  );
}

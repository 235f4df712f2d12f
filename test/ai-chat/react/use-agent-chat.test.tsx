// @vitest-environment jsdom
import { act, cleanup, type RenderResult, render, screen, waitFor } from "@testing-library/react";
import type { UIMessage } from "ai";
import { Suspense } from "react";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { type UseAgentChatResult, useAgentChat } from "../../../src/ai-chat/react/index.js";
import { createKeySet, issueToken, type KeySet, tokenAuth } from "../../../src/auth/index.js";
import { type UseAgentResult, useAgent } from "../../../src/react/index.js";
import { httpUrl, startServer, type TestServer } from "../../helpers/server.js";
import { SLOW_WORDS, TestChat, TOOL_TAIL, textOf } from "../fixtures.js";

let server: TestServer;
let keys: KeySet;
let instance = 0;
const room = () => `hook-chat-${++instance}`;

// As in the useAgent tests: `ws` stands in for jsdom's WebSocket, as in a Node app.
const jsdomWebSocket = globalThis.WebSocket;
beforeAll(async () => {
  globalThis.WebSocket = WebSocket as unknown as typeof globalThis.WebSocket;
  keys = await createKeySet();
  server = await startServer({ TestChat }, { auth: tokenAuth({ keys, rateLimit: false }) });
});
afterEach(() => cleanup());
afterAll(async () => {
  globalThis.WebSocket = jsdomWebSocket;
  await server.stop();
});

const seen = new Map<string, { chat: UseAgentChatResult; agent: UseAgentResult }>();

function Chat({ name, clientTools = false }: { name: string; clientTools?: boolean }) {
  const agent = useAgent({
    agent: "TestChat",
    name,
    host: `127.0.0.1:${server.port}`,
    // The seed page's pattern: a short-lived token fetched right before each connection.
    query: async () => ({
      token: await issueToken(keys, { sub: name, agent: "test-chat", name, ttl: 60 }),
    }),
    reconnect: { minDelay: 20, maxDelay: 100 },
  });
  const chat = useAgentChat({
    agent,
    ...(clientTools && {
      onToolCall: ({ toolCall, addToolOutput }) => {
        if (toolCall.toolName === "getLocation") {
          addToolOutput({ toolCallId: toolCall.toolCallId, output: { city: "Porto" } });
        }
      },
    }),
  });
  seen.set(name, { chat, agent });
  return (
    <ol data-testid="messages" data-status={chat.status}>
      {chat.messages.map((m: UIMessage) => (
        <li key={m.id} data-role={m.role}>
          {textOf(m)}
        </li>
      ))}
    </ol>
  );
}

/** Render inside an awaited `act`, so the suspended first render can resume. */
async function mount(name: string, clientTools = false): Promise<RenderResult> {
  let result!: RenderResult;
  await act(async () => {
    result = render(
      <Suspense fallback={<p>Connecting...</p>}>
        <Chat name={name} clientTools={clientTools} />
      </Suspense>,
    );
  });
  return result;
}

const assistantText = () =>
  [...screen.getByTestId("messages").querySelectorAll('li[data-role="assistant"]')].map(
    (li) => li.textContent ?? "",
  );

async function history(name: string): Promise<UIMessage[]> {
  const token = await issueToken(keys, { sub: name, agent: "test-chat", name });
  const url = httpUrl(server, `/agents/test-chat/${name}/get-messages?token=${token}`);
  return (await (await fetch(url)).json()) as UIMessage[];
}

/** Send "hi" and wait until the whole answer is rendered. */
async function sayHi(name: string): Promise<void> {
  await act(async () => {
    await seen.get(name)!.chat.sendMessage({ text: "hi" });
  });
  await waitFor(() => expect(assistantText()).toEqual(["Hello from the mock"]), {
    timeout: 10_000,
  });
}

/** Ask for the slow answer and wait until part of it is rendered. */
async function startSlowAnswer(name: string): Promise<void> {
  act(() => {
    void seen.get(name)!.chat.sendMessage({ text: "slow please" });
  });
  await waitFor(() => expect(assistantText()[0]?.length ?? 0).toBeGreaterThan(6), {
    timeout: 10_000,
  });
}

describe("useAgentChat (the official hook) on outpost/react's useAgent", () => {
  it("sends a message and renders the streamed answer", async () => {
    const name = room();
    await mount(name);
    await screen.findByTestId("messages", {}, { timeout: 10_000 });
    await sayHi(name);
    expect((await history(name)).map((m) => m.role)).toEqual(["user", "assistant"]);
  });

  it("loads the conversation on mount from the connect transcript", async () => {
    const name = room();
    const first = await mount(name);
    await screen.findByTestId("messages", {}, { timeout: 10_000 });
    await sayHi(name);
    first.unmount();
    seen.get(name)!.agent.client.close();
    await mount(name);
    await waitFor(() => expect(assistantText()).toEqual(["Hello from the mock"]), {
      timeout: 10_000,
    });
  });

  it("resumes an answer after the connection drops mid-stream: the whole answer, once", async () => {
    const name = room();
    await mount(name);
    await screen.findByTestId("messages", {}, { timeout: 10_000 });
    await startSlowAnswer(name);
    act(() => seen.get(name)!.agent.client.reconnect());
    await waitFor(() => expect(assistantText()).toEqual([SLOW_WORDS.join("")]), {
      timeout: 15_000,
    });
  });

  it("stop() cancels the answer on the server; the partial answer is kept", async () => {
    const name = room();
    await mount(name);
    await screen.findByTestId("messages", {}, { timeout: 10_000 });
    await startSlowAnswer(name);
    await act(async () => {
      await seen.get(name)!.chat.stop();
    });
    await waitFor(
      async () => {
        const stored = await history(name);
        expect(stored.length).toBe(2);
        expect(textOf(stored[1]).length).toBeLessThan(SLOW_WORDS.join("").length);
      },
      { timeout: 10_000 },
    );
  });

  it("clearHistory() empties the chat here and on the server", async () => {
    const name = room();
    await mount(name);
    await screen.findByTestId("messages", {}, { timeout: 10_000 });
    await sayHi(name);
    act(() => seen.get(name)!.chat.clearHistory());
    await waitFor(() => expect(seen.get(name)!.chat.messages).toEqual([]));
    await waitFor(async () => expect(await history(name)).toEqual([]), { timeout: 10_000 });
  });

  it("runs a client tool in onToolCall and streams the model's continuation", async () => {
    const name = room();
    await mount(name, true);
    await screen.findByTestId("messages", {}, { timeout: 10_000 });
    await act(async () => {
      await seen.get(name)!.chat.sendMessage({ text: "where am i?" });
    });
    const expected = `The tool said: {"city":"Porto"}${TOOL_TAIL.join("")}`;
    // One assistant message: the tool call and what the model said after its result.
    await waitFor(
      () => {
        expect(seen.get(name)!.chat.messages.map((m) => m.role)).toEqual(["user", "assistant"]);
        expect(assistantText()).toEqual([`Calling getLocation.${expected}`]);
      },
      { timeout: 15_000 },
    );
  });
});

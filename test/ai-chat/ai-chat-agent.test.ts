import { describe, expect, it } from "vitest";
import { httpUrl, wsUrl } from "../helpers/server.js";
import { connect, type Frame } from "../helpers/ws-client.js";
import {
  chatHarness,
  responseFrames,
  responses,
  SavingChat,
  SECRET_STACK,
  SLOW_WORDS,
  sendChat,
  streamedText,
  textOf,
  userMessage,
  waitDone,
} from "./fixtures.js";

const h = chatHarness();
const open = (name: string) => h.open(name);

describe("AIChatAgent over raw frames", () => {
  it("streams the model's answer as several cf_agent_use_chat_response chunks with seq, then a done frame naming the request's messages", async () => {
    await h.start();
    const client = await open("stream");
    sendChat(client, "req-1", [userMessage("u1", "hi")]);
    const done = await waitDone(client, "req-1");
    const chunks = responseFrames(client, "req-1").filter((f) => f.done === false);
    expect(chunks.length).toBeGreaterThan(4);
    expect(chunks.map((f) => f.seq)).toEqual(chunks.map((_, i) => i));
    expect(streamedText(chunks)).toBe("Hello from the mock");
    const start = JSON.parse(chunks[0]!.body as string) as { type: string; messageId?: string };
    expect(start.type).toBe("start");
    expect(typeof start.messageId).toBe("string");
    expect(done).toMatchObject({ body: "", done: true, outcome: "completed", messageIds: ["u1"] });
    // What was streamed is what is stored: same message id, same text.
    const history = (await (
      await fetch(httpUrl(h.server, "/agents/test-chat/stream/get-messages"))
    ).json()) as Array<{ id: string; role: string }>;
    expect(history.map((m) => m.role)).toEqual(["user", "assistant"]);
    expect(history[1]!.id).toBe(start.messageId);
    expect(textOf(history[1] as never)).toBe("Hello from the mock");
  });

  it("sends cf_agent_chat_messages to the other connections, not to the sender, and streams the answer to all", async () => {
    await h.start();
    const sender = await open("fanout");
    const other = await open("fanout");
    sendChat(sender, "req-f", [userMessage("u1", "hi")]);
    await waitDone(sender, "req-f");
    await waitDone(other, "req-f");
    const sentToOther = other.frames("cf_agent_chat_messages").filter((f) => f.connect !== true);
    expect(sentToOther.length).toBeGreaterThanOrEqual(1);
    expect((sentToOther[0]!.messages as Array<{ id: string }>).map((m) => m.id)).toEqual(["u1"]);
    expect(sender.frames("cf_agent_chat_messages").filter((f) => f.connect !== true)).toEqual([]);
    expect(streamedText(responseFrames(other, "req-f"))).toBe("Hello from the mock");
  });

  it("cancels a streaming answer on cf_agent_chat_request_cancel: done with outcome aborted, the partial answer kept", async () => {
    await h.start();
    const client = await open("cancel");
    sendChat(client, "req-c", [userMessage("u1", "slow please")]);
    await client.waitForCount(
      (m) => (m as Frame).type === "cf_agent_use_chat_response" && (m as Frame).id === "req-c",
      5,
      "a few chunks",
    );
    client.send({ type: "cf_agent_chat_request_cancel", id: "req-c" });
    const done = await waitDone(client, "req-c");
    expect(done.outcome).toBe("aborted");
    const text = streamedText(responseFrames(client, "req-c"));
    expect(text.length).toBeGreaterThan(0);
    expect(text.length).toBeLessThan(SLOW_WORDS.join("").length);
    const history = (await (
      await fetch(httpUrl(h.server, "/agents/test-chat/cancel/get-messages"))
    ).json()) as never[];
    expect(textOf(history[1])).toBe(text);
  });

  it("reports a model error as the official error frame and a done frame with outcome error, never a stack", async () => {
    await h.start();
    const client = await open("model-error");
    sendChat(client, "req-e", [userMessage("u1", "explode")]);
    const done = await waitDone(client, "req-e");
    expect(done.outcome).toBe("error");
    const error = responseFrames(client, "req-e").find((f) => f.error === true);
    expect(error).toMatchObject({ done: false, error: true, body: "model exploded" });
    const everything = JSON.stringify(client.received);
    expect(everything).not.toContain("secretFunction");
    expect(everything).not.toContain(SECRET_STACK.trim());
  });

  it("reports an error thrown by onChatMessage as a done error frame with its first line only", async () => {
    await h.start();
    const client = await open("thrown");
    sendChat(client, "req-t", [userMessage("u1", "throw")]);
    const done = await waitDone(client, "req-t");
    expect(done).toMatchObject({ done: true, error: true, body: "onChatMessage failed" });
    expect(JSON.stringify(client.received)).not.toContain("secretFunction");
  });

  it("streams a plain-text Response as text chunks", async () => {
    await h.start();
    const client = await open("plain");
    sendChat(client, "req-p", [userMessage("u1", "plain")]);
    await waitDone(client, "req-p");
    expect(streamedText(responseFrames(client, "req-p"))).toBe("plain text answer");
  });

  it("clears the chat on cf_agent_chat_clear: storage emptied, the other connections told", async () => {
    await h.start();
    const client = await open("clear");
    const other = await open("clear");
    sendChat(client, "req-1", [userMessage("u1", "hi")]);
    await waitDone(client, "req-1");
    client.send({ type: "cf_agent_chat_clear" });
    await other.waitFor((m) => (m as Frame).type === "cf_agent_chat_clear", "the clear");
    const history = await (
      await fetch(httpUrl(h.server, "/agents/test-chat/clear/get-messages"))
    ).json();
    expect(history).toEqual([]);
    expect(client.frames("cf_agent_chat_clear")).toEqual([]);
  });

  it("keeps the conversation across a server restart: get-messages and the connect transcript both have it", async () => {
    await h.start();
    const client = await open("restart");
    sendChat(client, "req-1", [userMessage("u1", "hi")]);
    await waitDone(client, "req-1");
    await h.restart();
    const history = (await (
      await fetch(httpUrl(h.server, "/agents/test-chat/restart/get-messages"))
    ).json()) as never[];
    expect(history.length).toBe(2);
    expect(textOf(history[1])).toBe("Hello from the mock");
    const again = await open("restart");
    const transcript = again.frames("cf_agent_chat_messages")[0]!;
    expect(transcript.connect).toBe(true);
    expect(transcript.messages).toEqual(history);
  });

  it("calls onChatResponse once the answer is persisted", async () => {
    await h.start();
    const client = await open("on-response");
    sendChat(client, "req-1", [userMessage("u1", "hi")]);
    await waitDone(client, "req-1");
    expect(responses.get("on-response")).toEqual([
      { status: "completed", text: "Hello from the mock" },
    ]);
  });

  it("answers a turn started by saveMessages on every connection and resolves with its outcome", async () => {
    await h.start({ SavingChat });
    const client = await connect(wsUrl(h.server, "/agents/saving-chat/save"));
    h.clients.push(client);
    const result = await client.rpc<{ requestId: string; status: string }>("ask", ["hi"]);
    expect(result.status).toBe("completed");
    const done = await waitDone(client, result.requestId);
    expect(done.outcome).toBe("completed");
    expect(streamedText(responseFrames(client, result.requestId))).toBe("Hello from the mock");
  });

  it("keeps only maxPersistedMessages messages in storage", async () => {
    await h.start({ SavingChat });
    const client = await connect(wsUrl(h.server, "/agents/saving-chat/trim"));
    h.clients.push(client);
    for (const text of ["one", "two", "three"]) {
      expect((await client.rpc<{ status: string }>("ask", [text])).status).toBe("completed");
    }
    const history = (await (
      await fetch(httpUrl(h.server, "/agents/saving-chat/trim/get-messages"))
    ).json()) as Array<{ role: string; parts: Array<{ text?: string }> }>;
    expect(history.length).toBe(4);
    expect(history.map((m) => m.role)).toEqual(["user", "assistant", "user", "assistant"]);
    expect(history[2]!.parts[0]!.text).toBe("three");
  });

  it("stores the messages a client sends in cf_agent_chat_messages and tells the others", async () => {
    await h.start();
    const client = await open("sync");
    const other = await open("sync");
    const messages = [userMessage("u1", "edited"), userMessage("u2", "again")];
    client.send({ type: "cf_agent_chat_messages", messages });
    const told = await other.waitFor<Frame>(
      (m) => (m as Frame).type === "cf_agent_chat_messages" && (m as Frame).connect !== true,
      "the new messages",
    );
    expect(told.messages).toEqual(messages);
    const history = await (
      await fetch(httpUrl(h.server, "/agents/test-chat/sync/get-messages"))
    ).json();
    expect(history).toEqual(messages);
  });

  it("answers a chat request whose body is not JSON with an error frame, and keeps the connection", async () => {
    await h.start();
    const client = await open("bad-body");
    client.send({
      type: "cf_agent_use_chat_request",
      id: "bad",
      init: { method: "POST", body: "{" },
    });
    const done = await waitDone(client, "bad");
    expect(done).toMatchObject({ done: true, error: true });
    sendChat(client, "good", [userMessage("u1", "hi")]);
    expect((await waitDone(client, "good")).outcome).toBe("completed");
  });
});

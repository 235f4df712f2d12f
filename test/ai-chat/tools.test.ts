import { describe, expect, it } from "vitest";
import { httpUrl } from "../helpers/server.js";
import type { Frame, RawClient } from "../helpers/ws-client.js";
import {
  bodies,
  chatHarness,
  responseFrames,
  sendChat,
  streamedText,
  TOOL_TAIL,
  userMessage,
  waitDone,
} from "./fixtures.js";

const h = chatHarness();
const open = (name: string) => h.open(name);

type ToolPart = { type: string; toolCallId?: string; state?: string; output?: unknown };

async function history(name: string): Promise<Array<{ role: string; parts: ToolPart[] }>> {
  return (await (
    await fetch(httpUrl(h.server!, `/agents/test-chat/${name}/get-messages`))
  ).json()) as never;
}

/**
 * The continuation the server offers the client that sent a tool answer, acknowledged as
 * the official client does; resolves with its request id.
 */
async function acceptContinuation(client: RawClient): Promise<string> {
  const offer = await client.waitFor<Frame>(
    (m) => (m as Frame).type === "cf_agent_stream_resuming",
    "the continuation offer",
  );
  client.send({ type: "cf_agent_stream_resume_ack", id: offer.id });
  return offer.id as string;
}

describe("AIChatAgent tools", () => {
  it("applies a client tool's result from cf_agent_tool_result, tells every connection, and continues the same assistant message", async () => {
    await h.start();
    const client = await open("client-tool");
    sendChat(client, "req-1", [userMessage("u1", "where am i?")]);
    await waitDone(client, "req-1");
    const call = responseFrames(client, "req-1")
      .map((f) => (f.body ? JSON.parse(f.body as string) : {}))
      .find((c) => c.type === "tool-input-available");
    expect(call).toMatchObject({ toolCallId: "call-getLocation", toolName: "getLocation" });

    client.send({
      type: "cf_agent_tool_result",
      toolCallId: "call-getLocation",
      toolName: "getLocation",
      output: { city: "Lisbon" },
      autoContinue: true,
    });
    const updated = await client.waitFor<Frame>(
      (m) => (m as Frame).type === "cf_agent_message_updated",
      "the updated message",
    );
    const part = (updated.message as { parts: ToolPart[] }).parts.find(
      (p) => p.toolCallId === "call-getLocation",
    );
    expect(part).toMatchObject({ state: "output-available", output: { city: "Lisbon" } });

    const next = await acceptContinuation(client);
    const done = await waitDone(client, next);
    expect(done).toMatchObject({ continuation: true, outcome: "completed" });
    const frames = responseFrames(client, next);
    expect(frames.every((f) => f.continuation === true)).toBe(true);
    expect(streamedText(frames)).toBe(`The tool said: {"city":"Lisbon"}${TOOL_TAIL.join("")}`);

    const stored = await history("client-tool");
    expect(stored.map((m) => m.role)).toEqual(["user", "assistant"]);
    const parts = stored[1]!.parts;
    expect(parts.find((p) => p.toolCallId === "call-getLocation")?.state).toBe("output-available");
    expect(parts.filter((p) => p.type === "text").length).toBeGreaterThanOrEqual(2);
  });

  it("runs a tool that needs approval only once cf_agent_tool_approval approves it", async () => {
    await h.start();
    const client = await open("approve");
    sendChat(client, "req-1", [userMessage("u1", "delete my report")]);
    await waitDone(client, "req-1");
    const bodies = responseFrames(client, "req-1").map((f) =>
      f.body ? JSON.parse(f.body as string) : {},
    );
    expect(bodies.find((c) => c.type === "tool-approval-request")).toMatchObject({
      toolCallId: "call-deleteFile",
    });
    expect(bodies.some((c) => c.type === "tool-output-available")).toBe(false);
    expect((await history("approve"))[1]!.parts.find((p) => p.toolCallId)?.state).toBe(
      "approval-requested",
    );

    client.send({
      type: "cf_agent_tool_approval",
      toolCallId: "call-deleteFile",
      approved: true,
      autoContinue: true,
    });
    const next = await acceptContinuation(client);
    await waitDone(client, next);
    const continued = responseFrames(client, next).map((f) =>
      f.body ? JSON.parse(f.body as string) : {},
    );
    expect(continued.find((c) => c.type === "tool-output-available")).toMatchObject({
      toolCallId: "call-deleteFile",
      output: { deleted: "/tmp/report.txt" },
    });
    const stored = await history("approve");
    expect(stored[1]!.parts.find((p) => p.toolCallId)).toMatchObject({
      state: "output-available",
      output: { deleted: "/tmp/report.txt" },
    });
  });

  it("never runs a tool whose approval was denied: its part becomes output-denied", async () => {
    await h.start();
    const client = await open("deny");
    sendChat(client, "req-1", [userMessage("u1", "delete my report")]);
    await waitDone(client, "req-1");
    client.send({
      type: "cf_agent_tool_approval",
      toolCallId: "call-deleteFile",
      approved: false,
      autoContinue: true,
    });
    const next = await acceptContinuation(client);
    await waitDone(client, next);
    const continued = responseFrames(client, next).map((f) =>
      f.body ? JSON.parse(f.body as string) : {},
    );
    expect(continued.some((c) => c.type === "tool-output-available")).toBe(false);
    const part = (await history("deny"))[1]!.parts.find((p) => p.toolCallId);
    expect(part?.state).toBe("output-denied");
  });

  it("gives a continuation after a server restart the body of the request that called the tool", async () => {
    await h.start();
    const first = await open("body-restart");
    sendChat(first, "req-1", [userMessage("u1", "where am i?")], { persona: "pirate" });
    await waitDone(first, "req-1");
    await h.restart();
    const client = await open("body-restart");
    client.send({
      type: "cf_agent_tool_result",
      toolCallId: "call-getLocation",
      toolName: "getLocation",
      output: { city: "Faro" },
      autoContinue: true,
    });
    await waitDone(client, await acceptContinuation(client));
    expect(bodies.get("body-restart")).toEqual([{ persona: "pirate" }, { persona: "pirate" }]);
  });
});

import { describe, expect, it } from "vitest";
import { httpUrl } from "../helpers/server.js";
import type { Frame } from "../helpers/ws-client.js";
import {
  chatHarness,
  responseFrames,
  SLOW_WORDS,
  sendChat,
  streamedText,
  TestChat,
  textOf,
  userMessage,
  waitDone,
} from "./fixtures.js";

const h = chatHarness();
const open = (name: string) => h.open(name);

const isChunkOf = (id: string) => (m: unknown) =>
  (m as Frame).type === "cf_agent_use_chat_response" && (m as Frame).id === id;

describe("AIChatAgent resumable streams", () => {
  it("offers a reconnecting client the running answer and replays it from seq 0, then streams the rest live: every chunk once", async () => {
    await h.start();
    const first = await open("resume");
    sendChat(first, "req-r", [userMessage("u1", "slow please")]);
    await first.waitForCount(isChunkOf("req-r"), 5, "a few chunks");
    await first.close();

    const second = await open("resume");
    const offer = await second.waitFor<Frame>(
      (m) => (m as Frame).type === "cf_agent_stream_resuming",
      "the resume offer",
    );
    expect(offer.id).toBe("req-r");
    // Nothing live reaches it before it acknowledges: the replay would duplicate it.
    expect(responseFrames(second, "req-r")).toEqual([]);
    second.send({ type: "cf_agent_stream_resume_ack", id: "req-r" });
    await waitDone(second, "req-r");

    const frames = responseFrames(second, "req-r");
    const replayed = frames.filter((f) => f.replay === true && f.body !== "");
    const marker = frames.findIndex((f) => f.replayComplete === true);
    const live = frames.slice(marker + 1).filter((f) => f.done === false);
    expect(replayed.length).toBeGreaterThanOrEqual(5);
    expect(marker).toBe(replayed.length);
    expect(frames[marker]).toMatchObject({ done: false, replay: true, body: "" });
    const seqs = [...replayed, ...live].map((f) => f.seq);
    expect(seqs).toEqual(seqs.map((_, i) => i));
    expect(streamedText(frames)).toBe(SLOW_WORDS.join(""));
    expect(frames.at(-1)).toMatchObject({ done: true, outcome: "completed", messageIds: ["u1"] });
  });

  it("answers cf_agent_stream_resume_request with the running answer, echoing the probe id, and with resume_none when idle", async () => {
    await h.start();
    const client = await open("probe");
    client.send({ type: "cf_agent_stream_resume_request", probeId: "p-idle" });
    const none = await client.waitFor<Frame>(
      (m) => (m as Frame).type === "cf_agent_stream_resume_none",
      "resume_none",
    );
    expect(none).toMatchObject({ reason: "idle", probeId: "p-idle" });

    const other = await open("probe");
    sendChat(other, "req-p", [userMessage("u1", "slow")]);
    await client.waitForCount(isChunkOf("req-p"), 3, "live chunks");
    client.send({ type: "cf_agent_stream_resume_request", probeId: "p-live" });
    const offer = await client.waitFor<Frame>(
      (m) => (m as Frame).type === "cf_agent_stream_resuming",
      "the offer",
    );
    expect(offer).toMatchObject({ id: "req-p", probeId: "p-live" });
    client.send({ type: "cf_agent_chat_request_cancel", id: "req-p" });
    await waitDone(other, "req-p");
  });

  it("replays a finished answer with a done frame when the acknowledgement comes after the end", async () => {
    await h.start();
    const first = await open("late-ack");
    sendChat(first, "req-l", [userMessage("u1", "hi")]);
    const second = await open("late-ack");
    await waitDone(first, "req-l");
    second.send({ type: "cf_agent_stream_resume_ack", id: "req-l" });
    await second.waitFor(
      (m) =>
        (m as Frame).type === "cf_agent_use_chat_response" &&
        (m as Frame).replay === true &&
        (m as Frame).done === true,
      "the replayed end",
    );
    const replayed = responseFrames(second, "req-l").filter((f) => f.replay === true);
    expect(streamedText(replayed)).toBe("Hello from the mock");
    expect(replayed.at(-1)).toMatchObject({ done: true, outcome: "completed" });
  });

  it("keeps what an answer had streamed when the server stops mid-answer: the next start stores it as the assistant message", async () => {
    await h.start({ TestChat }, { shutdownTimeout: 200 });
    const client = await open("crash");
    sendChat(client, "req-x", [userMessage("u1", "slow")]);
    await client.waitForCount(isChunkOf("req-x"), 6, "a few chunks");
    const seen = streamedText(responseFrames(client, "req-x"));
    // restart() closes the connection first, so shutdown does not wait for the answer to end.
    await h.restart();
    const history = (await (
      await fetch(httpUrl(h.server, "/agents/test-chat/crash/get-messages"))
    ).json()) as never[];
    expect(history.length).toBe(2);
    const kept = textOf(history[1]);
    expect(kept.startsWith(seen)).toBe(true);
    expect(kept.length).toBeLessThan(SLOW_WORDS.join("").length);
  });
});

import { describe, expect, it } from "vitest";
import { Outbox, type QueuedFrame } from "../../src/client/outbox.js";

function drain(outbox: Outbox): QueuedFrame[] {
  const sent: QueuedFrame[] = [];
  outbox.flush((frame) => {
    sent.push(frame);
    return true;
  });
  return sent;
}

describe("Outbox", () => {
  it("hands frames out in the order they were made", () => {
    const outbox = new Outbox(10);
    outbox.push({ text: "a" }, "send");
    outbox.push({ text: "b", callId: "1" }, "m");
    outbox.push({ text: "c" }, "send");
    expect(drain(outbox).map((frame) => frame.text)).toEqual(["a", "b", "c"]);
    expect(drain(outbox)).toEqual([]);
  });

  it("refuses a frame beyond its limit with queue_full naming what was sent", () => {
    const outbox = new Outbox(1);
    outbox.push({ text: "a" }, "send");
    expect(() => outbox.push({ text: "b" }, "increment")).toThrow(
      expect.objectContaining({ code: "queue_full", method: "increment" }),
    );
  });

  it("keeps only the last setState, in the place of the first", () => {
    const outbox = new Outbox(10);
    outbox.putState("s1");
    outbox.push({ text: "raw" }, "send");
    outbox.putState("s2");
    expect(outbox.hasState()).toBe(true);
    expect(drain(outbox).map((frame) => frame.text)).toEqual(["s2", "raw"]);
    expect(outbox.hasState()).toBe(false);
  });

  it("keeps the frame that failed and the rest, ahead of frames queued meanwhile", () => {
    const outbox = new Outbox(10);
    for (const text of ["a", "b", "c"]) outbox.push({ text }, "send");
    const sent: unknown[] = [];
    outbox.flush((frame) => {
      if (frame.text === "b") {
        outbox.push({ text: "d" }, "send");
        return false;
      }
      sent.push(frame.text);
      return true;
    });
    expect(sent).toEqual(["a"]);
    expect(drain(outbox).map((frame) => frame.text)).toEqual(["b", "c", "d"]);
  });

  it("drops one call's frame, or every call's, and keeps state and raw messages", () => {
    const outbox = new Outbox(10);
    outbox.push({ text: "call1", callId: "1" }, "m");
    outbox.push({ text: "call2", callId: "2" }, "m");
    outbox.push({ text: "call3", callId: "3" }, "m");
    outbox.push({ text: "raw" }, "send");
    outbox.putState("state");
    outbox.dropCall("2");
    outbox.flush((frame) => frame.text !== "call1");
    outbox.dropCalls();
    expect(drain(outbox).map((frame) => frame.text)).toEqual(["raw", "state"]);
  });
});

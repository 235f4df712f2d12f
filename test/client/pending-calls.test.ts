import { describe, expect, it } from "vitest";
import { AgentCallError } from "../../src/client/errors.js";
import { PendingCalls, splitCallOptions } from "../../src/client/pending-calls.js";

const rpc = (id: string, fields: object) => ({ type: "rpc", id, ...fields }) as never;

describe("PendingCalls", () => {
  it("resolves a call with its result and passes a stream's chunks on first", async () => {
    const calls = new PendingCalls(0, () => {});
    const chunks: unknown[] = [];
    let done: unknown;
    let id = "";
    const result = calls.open(
      "count",
      { stream: { onChunk: (c) => chunks.push(c), onDone: (d) => (done = d) } },
      (given) => (id = given),
    );
    calls.answer(rpc(id, { success: true, done: false, result: 1 }));
    calls.answer(rpc(id, { success: true, done: false, result: 2 }));
    calls.answer(rpc(id, { success: true, done: true, result: 3 }));
    await expect(result).resolves.toBe(3);
    expect(chunks).toEqual([1, 2]);
    expect(done).toBe(3);
    expect(calls.has(id)).toBe(false);
  });

  it("rejects with remote_error carrying the server's message, and tells the stream", async () => {
    const calls = new PendingCalls(0, () => {});
    let id = "";
    let streamError: string | undefined;
    const result = calls.open(
      "boom",
      { stream: { onError: (e) => (streamError = e) } },
      (given) => {
        id = given;
      },
    );
    calls.answer(rpc(id, { success: false, error: "it broke" }));
    await expect(result).rejects.toMatchObject({
      code: "remote_error",
      method: "boom",
      message: "it broke",
    });
    expect(streamError).toBe("it broke");
  });

  it("times a plain call out with the default timeout and lets the owner drop its frame", async () => {
    const dropped: string[] = [];
    const calls = new PendingCalls(20, (id) => dropped.push(id));
    let id = "";
    const result = calls.open("slow", {}, (given) => (id = given));
    await expect(result).rejects.toMatchObject({ code: "timeout", method: "slow" });
    expect(dropped).toEqual([id]);
    expect(calls.has(id)).toBe(false);
  });

  it("gives a streaming call no default timeout", async () => {
    const calls = new PendingCalls(20, () => {});
    let id = "";
    void calls.open("stream", { stream: {} }, (given) => (id = given));
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(calls.has(id)).toBe(true);
  });

  it("loses only the calls that were sent when a connection drops", async () => {
    const calls = new PendingCalls(0, () => {});
    const ids: string[] = [];
    const sent = calls.open("a", {}, (id) => ids.push(id));
    const queued = calls.open("b", {}, (id) => ids.push(id));
    calls.markSent(ids[0]!);
    calls.loseSent();
    await expect(sent).rejects.toMatchObject({ code: "connection_lost", method: "a" });
    expect(calls.has(ids[1]!)).toBe(true);
    calls.rejectAll(new Error("closed by the client"));
    await expect(queued).rejects.toMatchObject({
      code: "closed",
      message: "b not answered: closed by the client",
    });
  });

  it("rejects with what dispatch throws, and with the error given to reject", async () => {
    const calls = new PendingCalls(0, () => {});
    await expect(
      calls.open("bad", {}, () => {
        throw new TypeError("cannot serialize");
      }),
    ).rejects.toThrow("cannot serialize");
    const full = new AgentCallError("queue_full", "m", "too many");
    await expect(calls.open("m", {}, (id) => calls.reject(id, full))).rejects.toBe(full);
  });

  it("gives every call its own id", () => {
    const calls = new PendingCalls(0, () => {});
    const ids = new Set<string>();
    for (let i = 0; i < 100; i++) void calls.open("m", {}, (id) => ids.add(id));
    expect(ids.size).toBe(100);
  });
});

describe("splitCallOptions", () => {
  it("takes bare stream callbacks (Cloudflare's older signature) as the stream option", () => {
    const onChunk = () => {};
    expect(splitCallOptions({ onChunk })).toEqual({ stream: { onChunk } });
    expect(splitCallOptions({ timeout: 5 })).toEqual({ timeout: 5 });
  });
});

import { randomBytes } from "node:crypto";
import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { importSecret } from "../../src/auth/keys.js";
import { mintLinkCredential } from "../../src/cluster/link-auth.js";
import { LinkError } from "../../src/cluster/link-errors.js";
import type { LinkStream } from "../../src/cluster/link-stream.js";
import { CLUSTER_SECRET, type Collected, collect, startNode, stopNodes } from "../helpers/links.js";
import { waitFor, within } from "../helpers/wait.js";

afterEach(stopNodes);

const room = (i: number) => ({ agent: "counter", name: `room-${i}` });

describe("NodeLink: streams are multiplexed over one link", () => {
  it("carries many streams on one socket, in order per stream, interleaved across streams", async () => {
    const owner = await startNode("node-b");
    const edge = await startNode("node-a");
    const arrivals: Array<{ stream: number; seq: number }> = [];
    const opened: Array<{ target: unknown; meta: unknown; peer: string }> = [];
    owner.server.onStream((stream, info) => {
      opened.push(info);
      const index = Number(info.target.name.slice("room-".length));
      stream.onMessage((data) => {
        arrivals.push({ stream: index, seq: Number(data) });
        stream.send(data);
      });
    });
    const link = await edge.pool.get(owner.id, owner.address);
    const STREAMS = 100;
    const MESSAGES = 50;
    const streams: LinkStream[] = [];
    const received: Collected[] = [];
    for (let i = 0; i < STREAMS; i++) {
      const stream = link.openStream(room(i), { connectionId: `c${i}`, readonly: i % 2 === 0 });
      streams.push(stream);
      received.push(collect(stream));
    }
    // Round robin: message m of every stream before message m + 1 of any.
    for (let m = 0; m < MESSAGES; m++) for (const stream of streams) stream.send(String(m));
    await waitFor(
      () => received.every((r) => r.messages.length === MESSAGES),
      "every echo",
      15_000,
    );
    for (const r of received)
      expect(r.messages).toEqual(Array.from({ length: MESSAGES }, (_, m) => String(m)));
    // Per stream the owner saw 0, 1, 2…; across streams the arrivals interleave.
    for (let i = 0; i < STREAMS; i++) {
      const seqs = arrivals.filter((a) => a.stream === i).map((a) => a.seq);
      expect(seqs).toEqual(Array.from({ length: MESSAGES }, (_, m) => m));
    }
    const firstHundred = new Set(arrivals.slice(0, STREAMS).map((a) => a.stream));
    expect(firstHundred.size).toBeGreaterThan(1);
    // One socket for all of it, and the owner saw what the edge sent.
    expect(owner.server.links()).toHaveLength(1);
    expect(link.streamCount).toBe(STREAMS);
    expect(opened[7]).toEqual({
      target: room(7),
      meta: { connectionId: "c7", readonly: false },
      peer: "node-a",
    });
  });

  it("keeps text as text and bytes as bytes, both ways", async () => {
    const owner = await startNode("node-b");
    const edge = await startNode("node-a");
    const seen: Array<string | Buffer> = [];
    owner.server.onStream((stream) =>
      stream.onMessage((data) => {
        seen.push(data);
        stream.send(data);
      }),
    );
    const link = await edge.pool.get(owner.id, owner.address);
    const stream = link.openStream(room(1));
    const got = collect(stream);
    stream.send('{"type":"rpc"}');
    stream.send(Buffer.from([0, 1, 2, 255]));
    stream.send(new Uint8Array([9, 8]));
    stream.send("");
    await waitFor(() => got.messages.length === 4);
    expect(seen[0]).toBe('{"type":"rpc"}');
    expect(Buffer.isBuffer(seen[1])).toBe(true);
    expect(got.messages[0]).toBe('{"type":"rpc"}');
    expect([...(got.messages[1] as Buffer)]).toEqual([0, 1, 2, 255]);
    expect([...(got.messages[2] as Buffer)]).toEqual([9, 8]);
    expect(got.messages[3]).toBe("");
  });

  it("delivers messages that arrive before the owner attached its handler", async () => {
    const owner = await startNode("node-b");
    const edge = await startNode("node-a");
    const seen: string[] = [];
    owner.server.onStream(async (stream) => {
      // The owner awaits the instance's start before it attaches; nothing may be lost.
      await new Promise((resolve) => setTimeout(resolve, 300));
      stream.onMessage((data) => seen.push(String(data)));
    });
    const link = await edge.pool.get(owner.id, owner.address);
    const stream = link.openStream(room(1));
    for (let i = 0; i < 20; i++) stream.send(String(i));
    await waitFor(() => seen.length === 20);
    expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));
  });

  it("passes a close code and reason both ways; onClose fires once per side", async () => {
    const owner = await startNode("node-b");
    const edge = await startNode("node-a");
    const ownerSide: LinkStream[] = [];
    owner.server.onStream((stream) => {
      ownerSide.push(stream);
    });
    const link = await edge.pool.get(owner.id, owner.address);
    const revoked = collect(link.openStream(room(1)));
    const leaving = link.openStream(room(2));
    const leavingGot = collect(leaving);
    await waitFor(() => ownerSide.length === 2);
    const [first, second] = ownerSide as [LinkStream, LinkStream];
    const ownerClosed = collect(second);
    first.close(4009, "session revoked");
    expect(await revoked.closed).toEqual({ code: 4009, reason: "session revoked" });
    leaving.close(1000, "bye");
    expect(await ownerClosed.closed).toEqual({ code: 1000, reason: "bye" });
    expect(await leavingGot.closed).toEqual({ code: 1000, reason: "bye" });
    expect(leaving.send("late")).toBe(false);
    await waitFor(() => link.streamCount === 0, "streams forgotten");
  });

  it("closes a stream with data queued past its credit without breaking the link", async () => {
    const options = { maxFrameBytes: 64 * 1024, maxBufferedBytes: 512 * 1024 };
    const owner = await startNode("node-b", options);
    const edge = await startNode("node-a", options);
    const ownerSide: LinkStream[] = [];
    owner.server.onStream((stream) => {
      stream.pause();
      ownerSide.push(stream);
    });
    const link = await edge.pool.get(owner.id, owner.address);
    const stream = link.openStream(room(1));
    await waitFor(() => ownerSide.length === 1);
    const ownerClosed = collect(ownerSide[0]!).closed;
    // One window goes out, 384 KiB wait for credit that never comes; then the close.
    for (let i = 0; i < 40; i++) stream.send(Buffer.alloc(16 * 1024));
    expect(stream.bufferedAmount).toBe(40 * 16 * 1024 - 256 * 1024);
    stream.close(1000, "done");
    expect(await ownerClosed).toEqual({ code: 1000, reason: "done" });
    expect(link.isOpen).toBe(true);
    await expect(owner.server.links()[0]!.request(room(1), "x")).rejects.toMatchObject({
      code: "ERR_LINK_NO_HANDLER",
    });
  });

  it("refuses a stream 1013 when the owner has no stream handler", async () => {
    const owner = await startNode("node-b");
    const edge = await startNode("node-a");
    const link = await edge.pool.get(owner.id, owner.address);
    const got = collect(link.openStream(room(1)));
    expect((await got.closed).code).toBe(1013);
  });

  it("closes a stream 1011, without the error, when the owner's handler throws", async () => {
    const owner = await startNode("node-b");
    const edge = await startNode("node-a");
    owner.server.onStream(async () => {
      throw new Error("instance failed: /secret/path stack");
    });
    const link = await edge.pool.get(owner.id, owner.address);
    const got = collect(link.openStream(room(1)));
    expect(await got.closed).toEqual({ code: 1011, reason: "" });
    // The link itself is fine.
    expect(link.isOpen).toBe(true);
  });

  it("opens streams from the accepting side too, over the same link", async () => {
    const a = await startNode("node-a");
    const b = await startNode("node-b");
    const onA: string[] = [];
    a.server.onStream((stream, { target }) => {
      onA.push(target.name);
      stream.onMessage((data) => stream.send(`a:${data}`));
    });
    b.server.onStream((stream) => stream.onMessage((data) => stream.send(`b:${data}`)));
    const fromA = await a.pool.get(b.id, b.address);
    const fromB = await b.pool.get(a.id, a.address);
    // B reuses the link A opened: still one socket between the two.
    expect(a.server.links()).toHaveLength(0);
    expect(b.server.links()).toHaveLength(1);
    const streams = [
      fromA.openStream(room(1)),
      fromB.openStream(room(2)),
      fromA.openStream(room(3)),
    ];
    const got = streams.map(collect);
    for (const s of streams) s.send("x");
    await waitFor(() => got.every((g) => g.messages.length === 1));
    expect(got.map((g) => g.messages[0])).toEqual(["b:x", "a:x", "b:x"]);
    expect(onA).toEqual(["room-2"]);
  });
});

describe("NodeLink: closing", () => {
  it("drops a peer that never answers the close within 2 s, not ws's 30 s", async () => {
    const node = await startNode("node-b");
    const { token } = await mintLinkCredential(
      await importSecret(CLUSTER_SECRET),
      "node-a",
      node.id,
    );
    // A peer on a raw socket: it completes the handshake, then never reads or answers.
    const socket = connect(node.port, "127.0.0.1");
    socket.on("error", () => {});
    await new Promise((resolve) => socket.once("connect", resolve));
    socket.write(
      "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
        `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\n` +
        `Authorization: Bearer ${token}\r\n\r\n`,
    );
    await waitFor(() => node.server.links().length === 1, "the link accepted");
    const ended = new Promise((resolve) => socket.once("close", resolve));
    socket.resume();
    const started = performance.now();
    node.server.links()[0]!.close();
    await within(ended, 10_000, "the server to drop the socket");
    const ms = performance.now() - started;
    expect(ms).toBeGreaterThanOrEqual(1_500);
    expect(ms).toBeLessThan(10_000);
  });
});

describe("NodeLink: requests", () => {
  it("answers many concurrent requests, each with its own reply and body", async () => {
    const owner = await startNode("node-b");
    const edge = await startNode("node-a");
    owner.server.onRequest(async ({ target, payload, body, peer }) => {
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 20));
      return {
        payload: { target, payload, peer },
        body: Buffer.concat([Buffer.from("re:"), body ?? Buffer.alloc(0)]),
      };
    });
    const link = await edge.pool.get(owner.id, owner.address);
    const replies = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        link.request(room(i % 7), { call: i }, { body: Buffer.from(`b${i}`) }),
      ),
    );
    replies.forEach((reply, i) => {
      expect(reply.payload).toEqual({ target: room(i % 7), payload: { call: i }, peer: "node-a" });
      expect(Buffer.from(reply.body!).toString()).toBe(`re:b${i}`);
    });
    expect(link.pendingRequests).toBe(0);
  });

  it("rejects with ERR_LINK_REQUEST_FAILED, and not the error's text, when the handler throws", async () => {
    const owner = await startNode("node-b");
    const edge = await startNode("node-a");
    owner.server.onRequest(() => {
      throw new Error("db password is hunter2");
    });
    const link = await edge.pool.get(owner.id, owner.address);
    const error = await link.request(room(1), {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LinkError);
    expect(error).toMatchObject({ code: "ERR_LINK_REQUEST_FAILED" });
    expect(String((error as Error).message)).not.toContain("hunter2");
    expect(String((error as Error).stack)).not.toContain("hunter2");
  });

  it("rejects with ERR_LINK_NO_HANDLER when the peer has no request handler", async () => {
    const owner = await startNode("node-b");
    const edge = await startNode("node-a");
    const link = await edge.pool.get(owner.id, owner.address);
    await expect(link.request(room(1), {})).rejects.toMatchObject({ code: "ERR_LINK_NO_HANDLER" });
  });

  it("rejects with ERR_LINK_REQUEST_TIMEOUT when no reply comes in time, and ignores a late one", async () => {
    const owner = await startNode("node-b");
    const edge = await startNode("node-a");
    let answer: ((value: { payload: unknown }) => void) | undefined;
    owner.server.onRequest(
      () =>
        new Promise((resolve) => {
          answer = resolve;
        }),
    );
    const link = await edge.pool.get(owner.id, owner.address);
    await expect(link.request(room(1), {}, { timeoutMs: 200 })).rejects.toMatchObject({
      code: "ERR_LINK_REQUEST_TIMEOUT",
    });
    answer?.({ payload: "late" });
    owner.server.onRequest(({ payload }) => ({ payload }));
    await expect(link.request(room(1), "next")).resolves.toEqual({ payload: "next" });
  });
});

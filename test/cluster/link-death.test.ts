import { connect, createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { LinkError } from "../../src/cluster/link-errors.js";
import type { LinkStream } from "../../src/cluster/link-stream.js";
import {
  collect,
  killLinkNode,
  type LinkChild,
  spawnLinkNode,
  startNode,
  stopNodes,
} from "../helpers/links.js";
import { waitFor, within } from "../helpers/wait.js";

let child: LinkChild | undefined;
let proxy: Server | undefined;
afterEach(async () => {
  await killLinkNode(child);
  child = undefined;
  proxy?.close();
  proxy = undefined;
  await stopNodes();
});

const room = (i: number) => ({ agent: "counter", name: `room-${i}` });

/** A TCP proxy the test owns: `cut()` drops every connection through it at once. */
async function tcpProxy(target: number): Promise<{ port: number; cut: () => void }> {
  const sockets = new Set<Socket>();
  proxy = createServer((inbound) => {
    const outbound = connect(target, "127.0.0.1");
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => sockets.delete(s));
    }
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((resolve) => proxy!.listen(0, "127.0.0.1", resolve));
  const address = proxy.address();
  if (address === null || typeof address === "string") throw new Error("no proxy address");
  return {
    port: address.port,
    cut: () => {
      for (const s of sockets) s.destroy();
    },
  };
}

describe("Link death: every stream closes 1013 and in-flight requests reject", () => {
  it("closes every stream 1013 and rejects in-flight requests with ERR_LINK_CLOSED when the owner is killed", async () => {
    child = await spawnLinkNode({ nodeId: "node-b" });
    const edge = await startNode("node-a");
    const link = await edge.pool.get("node-b", child.address);
    const streams = Array.from({ length: 20 }, (_, i) => link.openStream(room(i)));
    const got = streams.map(collect);
    for (const s of streams) s.send("ping");
    await waitFor(() => got.every((g) => g.messages.length === 1), "echoes from the owner");
    const inFlight = Array.from({ length: 10 }, () =>
      link.request({ agent: "counter", name: "hang" }, {}).catch((e: unknown) => e),
    );
    await waitFor(() => link.pendingRequests === 10);
    const killed = performance.now();
    child.child.kill("SIGKILL");
    const codes = await within(Promise.all(got.map((g) => g.closed)), 10_000, "streams closed");
    const errors = await within(Promise.all(inFlight), 10_000, "requests rejected");
    console.log(
      `owner killed: all streams closed 1013 after ${(performance.now() - killed).toFixed(0)} ms`,
    );
    expect(codes.every((c) => c.code === 1013)).toBe(true);
    for (const error of errors) {
      expect(error).toBeInstanceOf(LinkError);
      expect(error).toMatchObject({ code: "ERR_LINK_CLOSED" });
    }
    expect(link.isOpen).toBe(false);
    expect(() => link.openStream(room(99))).toThrow(LinkError);
    await expect(link.request(room(1), {})).rejects.toMatchObject({ code: "ERR_LINK_CLOSED" });
  });

  it("closes the owner's streams 1013 when the edge node is killed", async () => {
    const owner = await startNode("node-b");
    const ownerStreams: LinkStream[] = [];
    owner.server.onStream((stream) => {
      ownerStreams.push(stream);
      stream.onMessage(() => {});
    });
    child = await spawnLinkNode({
      nodeId: "node-a",
      dial: { nodeId: "node-b", address: owner.address, streams: 12 },
    });
    await waitFor(() => ownerStreams.length === 12, "streams from the edge", 15_000);
    const closed = ownerStreams.map((s) => collect(s).closed);
    child.child.kill("SIGKILL");
    const codes = await within(Promise.all(closed), 10_000, "owner streams closed");
    expect(codes.every((c) => c.code === 1013)).toBe(true);
    await waitFor(() => owner.server.links().length === 0, "the link gone on the owner");
  });

  it("closes streams 1013 on both sides and rejects requests both ways when the network cuts the link", async () => {
    const owner = await startNode("node-b");
    const edge = await startNode("node-a");
    const ownerStreams: LinkStream[] = [];
    owner.server.onStream((stream) => {
      ownerStreams.push(stream);
    });
    owner.server.onRequest(() => new Promise(() => {}));
    edge.server.onRequest(() => new Promise(() => {}));
    const through = await tcpProxy(owner.port);
    const link = await edge.pool.get(owner.id, `127.0.0.1:${through.port}`);
    const edgeStreams = Array.from({ length: 8 }, (_, i) => link.openStream(room(i)));
    const edgeClosed = edgeStreams.map((s) => collect(s).closed);
    await waitFor(() => ownerStreams.length === 8);
    const ownerClosed = ownerStreams.map((s) => collect(s).closed);
    const ownerLink = owner.server.links()[0]!;
    const fromEdge = link.request(room(1), {}).catch((e: unknown) => e);
    const fromOwner = ownerLink.request(room(1), {}).catch((e: unknown) => e);
    await waitFor(() => link.pendingRequests === 1 && ownerLink.pendingRequests === 1);
    through.cut();
    const both = await within(
      Promise.all([...edgeClosed, ...ownerClosed]),
      10_000,
      "streams closed on both sides",
    );
    expect(both).toHaveLength(16);
    expect(both.every((c) => c.code === 1013)).toBe(true);
    expect(await fromEdge).toMatchObject({ code: "ERR_LINK_CLOSED" });
    expect(await fromOwner).toMatchObject({ code: "ERR_LINK_CLOSED" });
  });

  it("notices a peer that stopped answering (SIGSTOP) by its heartbeat and closes its streams 1013", async () => {
    child = await spawnLinkNode({ nodeId: "node-b" });
    const edge = await startNode("node-a", { heartbeatMs: 250 });
    const link = await edge.pool.get("node-b", child.address);
    const streams = Array.from({ length: 5 }, (_, i) => link.openStream(room(i)));
    const got = streams.map(collect);
    const pending = link.request(room(1), {}, { timeoutMs: 60_000 }).catch((e: unknown) => e);
    child.child.kill("SIGSTOP");
    const stopped = performance.now();
    const codes = await within(Promise.all(got.map((g) => g.closed)), 15_000, "streams closed");
    console.log(
      `peer stopped: link declared dead after ${(performance.now() - stopped).toFixed(0)} ms (heartbeat 250 ms)`,
    );
    expect(codes.every((c) => c.code === 1013)).toBe(true);
    expect(await pending).toMatchObject({ code: "ERR_LINK_CLOSED" });
  });
});

import { createServer, type Server } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket, WebSocketServer } from "ws";
import { mintLinkCredential } from "../../src/cluster/link-auth.js";
import { LinkError } from "../../src/cluster/link-errors.js";
import {
  collect,
  killLinkNode,
  type LinkChild,
  spawnLinkNode,
  startNode,
  stopNodes,
} from "../helpers/links.js";
import { waitFor, within } from "../helpers/wait.js";

const children: LinkChild[] = [];
let tcp: Server | undefined;
const strangers: WebSocketServer[] = [];
afterEach(async () => {
  for (const s of strangers.splice(0)) s.close();
  for (const c of children.splice(0)) await killLinkNode(c);
  tcp?.close();
  tcp = undefined;
  await stopNodes();
});

const room = { agent: "counter", name: "room-1" };

describe("LinkPool: one live link per peer, opened lazily, reused, reopened", () => {
  it("opens no link before the first get, then exactly one for many concurrent gets", async () => {
    const owner = await startNode("node-b");
    const edge = await startNode("node-a");
    let accepted = 0;
    owner.server.onLink(() => accepted++);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(accepted).toBe(0);
    expect(edge.pool.peek(owner.id)).toBeUndefined();
    const links = await Promise.all(
      Array.from({ length: 50 }, () => edge.pool.get(owner.id, owner.address)),
    );
    expect(new Set(links).size).toBe(1);
    const again = await edge.pool.get(owner.id, owner.address);
    expect(again).toBe(links[0]);
    expect(edge.pool.peek(owner.id)).toBe(links[0]);
    expect(accepted).toBe(1);
    expect(owner.server.links()).toHaveLength(1);
  });

  it("reopens the link after the peer comes back on its address, with a new live link", async () => {
    const edge = await startNode("node-a", { pool: { backoffMs: 50, maxBackoffMs: 400 } });
    const first = await spawnLinkNode({ nodeId: "node-b" });
    children.push(first);
    const link = await edge.pool.get("node-b", first.address);
    expect((await link.request(room, "one")).payload).toBe("one");
    const stream = collect(link.openStream(room));
    first.child.kill("SIGKILL");
    expect((await within(stream.closed, 10_000, "stream closed")).code).toBe(1013);
    await link.closed;
    // Down: `get` fails fast with a typed error, and keeps failing while nothing listens.
    const down = await edge.pool.get("node-b", first.address).catch((e: unknown) => e);
    expect(down).toBeInstanceOf(LinkError);
    expect(down).toMatchObject({ code: "ERR_LINK_UNAVAILABLE" });
    // The peer restarts on the same address.
    const second = await spawnLinkNode({ nodeId: "node-b", port: first.port });
    children.push(second);
    let reopened: Awaited<ReturnType<typeof edge.pool.get>> | undefined;
    await waitFor(
      async () => {
        reopened = await edge.pool.get("node-b", first.address).catch(() => undefined);
        return reopened !== undefined;
      },
      "the link reopened",
      15_000,
    );
    expect(reopened).not.toBe(link);
    expect(reopened!.isOpen).toBe(true);
    expect((await reopened!.request(room, "two")).payload).toBe("two");
    const s = reopened!.openStream(room);
    const got = collect(s);
    s.send("back");
    await waitFor(() => got.messages.length === 1);
    expect(got.messages[0]).toBe("back");
  });

  it("backs off: a peer that is down gets a few dials, not one per get", async () => {
    let dials = 0;
    // Accepts and drops every connection: a port where no node answers.
    tcp = createServer((socket) => {
      dials++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => tcp!.listen(0, "127.0.0.1", resolve));
    const address = tcp.address();
    if (address === null || typeof address === "string") throw new Error("no address");
    const edge = await startNode("node-a", { pool: { backoffMs: 100, maxBackoffMs: 2_000 } });
    let failures = 0;
    const until = Date.now() + 1_500;
    while (Date.now() < until) {
      await Promise.all(
        Array.from({ length: 20 }, () =>
          edge.pool.get("node-b", `127.0.0.1:${address.port}`).catch((error: unknown) => {
            if (error instanceof LinkError && error.code === "ERR_LINK_UNAVAILABLE") failures++;
          }),
        ),
      );
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    console.log(`peer down for 1.5 s: ${failures} failed gets, ${dials} dials`);
    expect(failures).toBeGreaterThan(200);
    // 100, 200, 400, 800 ms (halved at worst by jitter): at most ~7 dials in 1.5 s.
    expect(dials).toBeGreaterThanOrEqual(2);
    expect(dials).toBeLessThanOrEqual(8);
  });

  it("refuses a peer that is not the node asked for, before anything is opened", async () => {
    const other = await startNode("node-c");
    const edge = await startNode("node-a");
    const error = await edge.pool.get("node-b", other.address).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LinkError);
    expect(error).toMatchObject({ code: "ERR_LINK_UNAVAILABLE" });
    // node-c refused a credential meant for node-b before anything was opened.
    expect(other.server.links()).toHaveLength(0);
    await waitFor(() => other.logs.some((l) => l.reason === "wrong_node"));
  });

  it("refuses a WebSocket server that cannot prove it is the node (ERR_LINK_PEER_MISMATCH)", async () => {
    const edge = await startNode("node-a");
    const owner = await startNode("node-b");
    // A proof captured from a real handshake with node-b, replayed by a stranger.
    let captured: string | undefined;
    const real = new WebSocket(`ws://${owner.address}`, {
      headers: {
        authorization: `Bearer ${(await mintLinkCredential(await edge.server.key(), "node-a", "node-b")).token}`,
      },
    });
    real.on("upgrade", (res) => {
      captured = res.headers["x-outpost-node"] as string;
    });
    await new Promise((resolve) => real.once("open", resolve));
    real.close();
    expect(captured).toBeDefined();
    for (const proof of [undefined, captured]) {
      const stranger = new WebSocketServer({ port: 0, host: "127.0.0.1" });
      strangers.push(stranger);
      let spoke = false;
      stranger.on("headers", (headers) => {
        if (proof !== undefined) headers.push(`x-outpost-node: ${proof}`);
      });
      stranger.on("connection", (ws) => {
        ws.send(Buffer.from([1, 0, 0, 0, 2]));
        ws.on("message", () => {
          spoke = true;
        });
      });
      await new Promise((resolve) => stranger.once("listening", resolve));
      const { port } = stranger.address() as { port: number };
      const error = await edge.pool.get("node-b", `127.0.0.1:${port}`).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LinkError);
      expect(error).toMatchObject({ code: "ERR_LINK_PEER_MISMATCH" });
      expect(spoke).toBe(false);
      expect(edge.pool.peek("node-b")).toBeUndefined();
      edge.pool.forget("node-b");
    }
  });

  it("does not link nodes with different cluster secrets, and says so in the dialer's log", async () => {
    const owner = await startNode("node-b");
    const edge = await startNode("node-a", {
      secret: "a-different-cluster-secret-0123456789-abcdefgh",
    });
    const error = await edge.pool.get(owner.id, owner.address).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ERR_LINK_UNAVAILABLE" });
    expect(owner.server.links()).toHaveLength(0);
    await waitFor(() => owner.logs.some((l) => l.reason === "credential_invalid"));
    expect(edge.logs.some((l) => l.event === "link_refused_by_peer")).toBe(true);
  });

  it("leaves no link behind when the peer is forgotten while it is being dialed", async () => {
    const owner = await startNode("node-b");
    const edge = await startNode("node-a");
    let accepted = 0;
    owner.server.onLink(() => accepted++);
    const dialing = edge.pool.get(owner.id, owner.address);
    edge.pool.forget(owner.id);
    await expect(dialing).rejects.toMatchObject({ code: "ERR_LINK_UNAVAILABLE" });
    expect(edge.pool.peek(owner.id)).toBeUndefined();
    await waitFor(() => accepted === 1 && owner.server.links().length === 0, "the link closed");
  });

  it("forget closes a peer's link and its streams 1013", async () => {
    const owner = await startNode("node-b");
    const edge = await startNode("node-a");
    owner.server.onStream(() => {});
    const link = await edge.pool.get(owner.id, owner.address);
    const stream = collect(link.openStream(room));
    edge.pool.forget(owner.id);
    expect((await stream.closed).code).toBe(1013);
    expect(edge.pool.peek(owner.id)).toBeUndefined();
  });
});

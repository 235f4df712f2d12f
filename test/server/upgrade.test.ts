import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { ServerProcess } from "../../bench/servers/index.js";
import { createBenchKeys, createSigner } from "../../bench/tokens.js";
import { createKeySet, issueToken, tokenAuth } from "../../src/auth/index.js";
import { Agent, type Connection } from "../../src/index.js";
import { redactUrl } from "../../src/server/logger.js";
import { startServer, wsUrl } from "../helpers/server.js";
import { connect } from "../helpers/ws-client.js";

class Lobby extends Agent {
  static uris: string[] = [];
  override onConnect(connection: Connection) {
    Lobby.uris.push(connection.uri);
  }
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Open a socket with `token` in the query and wait for its state frame. */
function openWithState(port: number, token: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/agents/bench/room?token=${token}`);
    ws.on("message", (data: Buffer) => {
      if ((JSON.parse(data.toString()) as { type: string }).type === "cf_agent_state") resolve(ws);
    });
    ws.on("error", reject);
    ws.on("close", (code) => reject(new Error(`closed ${code}`)));
  });
}

describe("upgrade", () => {
  it("connection.uri of a socket whose only query parameter is its token reads as the whole URL redacted", async () => {
    const keys = await createKeySet({ secret: "upgrade-suite-secret-0123456789abcdefgh" });
    const server = await startServer({ Lobby }, { auth: tokenAuth({ keys, rateLimit: false }) });
    cleanups.push(() => server.stop());
    const token = await issueToken(keys, { sub: "ada", agent: "lobby", name: "main" });
    const url = wsUrl(server, `/agents/lobby/main?token=${token}`);
    const client = await connect(url);
    await client.close();
    expect(Lobby.uris).toHaveLength(1);
    // The same string the full redaction of the upgrade URL gives, without the token.
    expect(Lobby.uris[0]).toBe(redactUrl(url.replace(/^ws:/, "http:")));
    expect(Lobby.uris[0]).toMatch(/\/agents\/lobby\/main\?token=\[redacted\]$/);
    expect(Lobby.uris[0]).not.toContain(token.split(".")[2]);
  });

  it("connection.uri reads as the whole URL redacted whatever else the query holds", async () => {
    const keys = await createKeySet({ secret: "upgrade-suite-secret-0123456789abcdefgh" });
    const server = await startServer({ Lobby }, { auth: tokenAuth({ keys, rateLimit: false }) });
    cleanups.push(() => server.stop());
    const token = await issueToken(keys, { sub: "ada", agent: "lobby", name: "main" });
    const queries = [
      `token=${token}&room=7`,
      `room=7&token=${token}`,
      `token=${token}&`,
      `tokenish=1&token=${token}`,
      `%74oken=${token}`,
    ];
    Lobby.uris = [];
    for (const query of queries) {
      await (await connect(wsUrl(server, `/agents/lobby/main?${query}`))).close();
    }
    expect(Lobby.uris).toEqual(
      queries.map((query) => redactUrl(`${server.url}/agents/lobby/main?${query}`)),
    );
    for (const uri of Lobby.uris) expect(uri).not.toContain(token.split(".")[2]);
  });

  it("an idle authenticated connection keeps no copy of its token (nor of its upgrade URL) in the server's heap", {
    timeout: 120_000,
  }, async () => {
    const { server, signer, sockets, dir } = await heapSubject();
    const tokens = await Promise.all([1, 2, 3].map((i) => signer.sign(`user-${i}`)));
    sockets.push(...(await Promise.all(tokens.map((t) => openWithState(server.port, t)))));
    const snapshot = JSON.parse(
      readFileSync(await server.snapshot(join(dir, "idle.heapsnapshot")), "utf8"),
    ) as { strings: string[]; snapshot: { node_count: number } };
    expect(snapshot.snapshot.node_count).toBeGreaterThan(0);
    // Each token's signature is unique to it: any string holding it is a copy.
    const signatures = tokens.map((t) => t.split(".")[2]!);
    const held = snapshot.strings.filter((s) => signatures.some((sig) => s.includes(sig)));
    expect(held).toEqual([]);
    // The connections were alive while the snapshot was taken.
    expect(sockets.every((ws) => ws.readyState === WebSocket.OPEN)).toBe(true);
  });

  it("an idle connection keeps its id as one flat string, not a tree of concatenated pieces", {
    timeout: 120_000,
  }, async () => {
    const { server, signer, sockets, dir } = await heapSubject();
    const concatenated = async (file: string) =>
      countNodes(
        readFileSync(await server.snapshot(join(dir, file)), "utf8"),
        "concatenated string",
      );
    // The instance is running and warm before the first count.
    for (let i = 0; i < 5; i++)
      sockets.push(await openWithState(server.port, await signer.sign(`warm-${i}`)));
    const before = await concatenated("before.heapsnapshot");
    const count = 100;
    const tokens = await Promise.all(
      Array.from({ length: count }, (_, i) => signer.sign(`user-${i}`)),
    );
    for (const token of tokens) sockets.push(await openWithState(server.port, token));
    const after = await concatenated("after.heapsnapshot");
    expect(sockets.every((ws) => ws.readyState === WebSocket.OPEN)).toBe(true);
    // A UUID as randomUUID() returns it is ~14 concatenated strings (~490 bytes).
    expect((after - before) / count).toBeLessThan(1);
  });
});

/**
 * The bench's Outpost server (serve() with tokenAuth) in a process of its own, so a heap
 * snapshot holds the server's objects alone and not this process's, which holds the tokens;
 * with a signer, the sockets a test opens, and a directory for snapshots, all cleaned up.
 */
async function heapSubject() {
  const keys = await createBenchKeys();
  const server = await ServerProcess.start("outpost", { keys, algorithm: "EdDSA" });
  cleanups.push(() => server.stop());
  const signer = await createSigner(keys, "EdDSA");
  const sockets: WebSocket[] = [];
  cleanups.push(() => {
    for (const ws of sockets) ws.terminate();
  });
  const dir = mkdtempSync(join(tmpdir(), "outpost-upgrade-heap-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return { server, signer, sockets, dir };
}

/** How many nodes of `type` a heap snapshot holds. */
function countNodes(text: string, type: string): number {
  const snapshot = JSON.parse(text) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
  };
  const { node_fields: fields, node_types: types } = snapshot.snapshot.meta;
  const typeAt = fields.indexOf("type");
  const wanted = types[0].indexOf(type);
  let count = 0;
  for (let i = typeAt; i < snapshot.nodes.length; i += fields.length) {
    if (snapshot.nodes[i] === wanted) count++;
  }
  return count;
}

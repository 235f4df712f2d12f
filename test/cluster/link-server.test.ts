import { randomBytes, randomUUID } from "node:crypto";
import { request } from "node:http";
import { connect } from "node:net";
import fc from "fast-check";
import { SignJWT } from "jose";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { createKeySet, issueToken } from "../../src/auth/index.js";
import { importSecret } from "../../src/auth/keys.js";
import { mintLinkCredential } from "../../src/cluster/link-auth.js";
import { LinkError } from "../../src/cluster/link-errors.js";
import { encodeData } from "../../src/cluster/link-frames.js";
import { CLUSTER_SECRET, startNode, stopNodes, type TestNode } from "../helpers/links.js";
import { waitFor, within } from "../helpers/wait.js";

afterEach(stopNodes);

interface Answer {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
  upgraded: boolean;
}

/** A WebSocket handshake by hand, so a refusal can be read byte for byte. */
function handshake(port: number, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: "127.0.0.1",
      port,
      path: "/",
      headers: {
        connection: "Upgrade",
        upgrade: "websocket",
        "sec-websocket-version": "13",
        "sec-websocket-key": randomBytes(16).toString("base64"),
        ...headers,
      },
    });
    req.on("upgrade", (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, body: "", headers: res.headers, upgraded: true });
    });
    req.on("response", (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, body, headers: res.headers, upgraded: false }),
      );
    });
    req.on("error", reject);
    req.end();
  });
}

async function credential(node: TestNode, from = "node-a"): Promise<string> {
  const { token } = await mintLinkCredential(await importSecret(CLUSTER_SECRET), from, node.id);
  return token;
}

/** A link credential with chosen times and audience, signed with `secret`. */
async function craft(
  secret: string,
  claims: { peer: string; iat: number; exp: number; aud?: string; alg?: "HS256" | "HS512" },
): Promise<string> {
  return new SignJWT({ peer: claims.peer })
    .setProtectedHeader({ alg: claims.alg ?? "HS256" })
    .setAudience(claims.aud ?? "outpost-node")
    .setSubject("node-a")
    .setJti(randomUUID())
    .setIssuedAt(claims.iat)
    .setExpirationTime(claims.exp)
    .sign(Buffer.from(secret));
}

/** A refused handshake: 401, empty body, no proof header, nothing opened on the node. */
async function expectRefused(node: TestNode, answer: Answer, reason: string): Promise<void> {
  expect(answer.upgraded).toBe(false);
  expect(answer.status).toBe(401);
  expect(answer.body).toBe("");
  expect(answer.headers["x-outpost-node"]).toBeUndefined();
  expect(node.server.links()).toHaveLength(0);
  await waitFor(() => node.logs.some((l) => l.event === "link_refused" && l.reason === reason));
}

const now = () => Math.floor(Date.now() / 1000);

describe("LinkServer: an authenticated link is required", () => {
  it("accepts a handshake with a valid link credential and answers with its own proof", async () => {
    const node = await startNode("node-b");
    const answer = await handshake(node.port, {
      authorization: `Bearer ${await credential(node)}`,
    });
    expect(answer.upgraded).toBe(true);
    expect(answer.status).toBe(101);
    expect(typeof answer.headers["x-outpost-node"]).toBe("string");
  });

  it("refuses a handshake with no credential with HTTP 401 and nothing else", async () => {
    const node = await startNode("node-b");
    await expectRefused(node, await handshake(node.port), "credential_missing");
  });

  it("refuses a browser (an Origin header) even with a valid credential", async () => {
    const node = await startNode("node-b");
    const answer = await handshake(node.port, {
      origin: "https://app.example",
      authorization: `Bearer ${await credential(node)}`,
    });
    await expectRefused(node, answer, "browser_origin");
  });

  it("refuses a client token (the app's EdDSA key, the app's audience)", async () => {
    const node = await startNode("node-b");
    const keys = await createKeySet();
    const token = await issueToken(keys, { sub: "user-1", agent: "counter", name: "room-1" });
    const answer = await handshake(node.port, { authorization: `Bearer ${token}` });
    await expectRefused(node, answer, "credential_invalid");
  });

  it("refuses a client token signed with the same secret (HS256) but the app's audience", async () => {
    const node = await startNode("node-b");
    const keys = await createKeySet({ secret: CLUSTER_SECRET });
    const token = await issueToken(keys, { sub: "user-1", agent: "counter", name: "room-1" });
    const answer = await handshake(node.port, { authorization: `Bearer ${token}` });
    await expectRefused(node, answer, "credential_invalid");
  });

  it("refuses a client token passed the way browsers pass it (?token= and subprotocol)", async () => {
    const node = await startNode("node-b");
    const token = await credential(node);
    // A valid link credential, but not where a link carries it: only `Authorization` counts.
    const answer = await new Promise<Answer>((resolve, reject) => {
      const req = request({
        host: "127.0.0.1",
        port: node.port,
        path: `/agents/counter/room-1?token=${token}`,
        headers: {
          connection: "Upgrade",
          upgrade: "websocket",
          "sec-websocket-version": "13",
          "sec-websocket-key": randomBytes(16).toString("base64"),
          "sec-websocket-protocol": `bearer.${token}`,
        },
      });
      req.on("response", (res) => {
        res.resume();
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, body: "", headers: res.headers, upgraded: false }),
        );
      });
      req.on("upgrade", (_res, socket) => {
        socket.destroy();
        reject(new Error("upgraded"));
      });
      req.on("error", reject);
      req.end();
    });
    await expectRefused(node, answer, "credential_missing");
  });

  it("refuses a credential signed with a wrong secret", async () => {
    const node = await startNode("node-b");
    const token = await craft("another-secret-0123456789-abcdefghijklmnop", {
      peer: node.id,
      iat: now(),
      exp: now() + 30,
    });
    const answer = await handshake(node.port, { authorization: `Bearer ${token}` });
    await expectRefused(node, answer, "credential_invalid");
  });

  it("refuses an expired credential", async () => {
    const node = await startNode("node-b");
    const token = await craft(CLUSTER_SECRET, { peer: node.id, iat: now() - 90, exp: now() - 60 });
    const answer = await handshake(node.port, { authorization: `Bearer ${token}` });
    await expectRefused(node, answer, "credential_expired");
  });

  it("refuses a credential that lives longer than 60 s", async () => {
    const node = await startNode("node-b");
    const token = await craft(CLUSTER_SECRET, { peer: node.id, iat: now(), exp: now() + 120 });
    const answer = await handshake(node.port, { authorization: `Bearer ${token}` });
    await expectRefused(node, answer, "lifetime_too_long");
  });

  it("refuses a credential with another algorithm (HS512) or audience", async () => {
    const node = await startNode("node-b");
    const hs512 = await craft(CLUSTER_SECRET, {
      peer: node.id,
      iat: now(),
      exp: now() + 30,
      alg: "HS512",
    });
    await expectRefused(
      node,
      await handshake(node.port, { authorization: `Bearer ${hs512}` }),
      "credential_invalid",
    );
    const audience = await craft(CLUSTER_SECRET, {
      peer: node.id,
      iat: now(),
      exp: now() + 30,
      aud: "outpost",
    });
    const answer = await handshake(node.port, { authorization: `Bearer ${audience}` });
    expect(answer.status).toBe(401);
    expect(node.logs.filter((l) => l.reason === "credential_invalid")).toHaveLength(2);
  });

  it("refuses an unsigned credential (alg none)", async () => {
    const node = await startNode("node-b");
    const part = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
    const token = `${part({ alg: "none" })}.${part({
      aud: "outpost-node",
      sub: "node-a",
      peer: node.id,
      jti: "x",
      iat: now(),
      exp: now() + 30,
    })}.`;
    const answer = await handshake(node.port, { authorization: `Bearer ${token}` });
    await expectRefused(node, answer, "credential_invalid");
  });

  it("refuses a credential minted for another node", async () => {
    const node = await startNode("node-b");
    const { token } = await mintLinkCredential(
      await importSecret(CLUSTER_SECRET),
      "node-a",
      "node-c",
    );
    const answer = await handshake(node.port, { authorization: `Bearer ${token}` });
    await expectRefused(node, answer, "wrong_node");
  });

  it("refuses a credential presented a second time", async () => {
    const node = await startNode("node-b");
    const token = await credential(node);
    const first = await handshake(node.port, { authorization: `Bearer ${token}` });
    expect(first.status).toBe(101);
    await waitFor(() => node.server.links().length === 0, "the first link to go");
    const second = await handshake(node.port, { authorization: `Bearer ${token}` });
    await expectRefused(node, second, "credential_replayed");
  });

  it("answers a plain HTTP request with 401 and an empty body", async () => {
    const node = await startNode("node-b");
    const answer = await new Promise<Answer>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port: node.port, path: "/agents/counter/room-1" });
      req.on("response", (res) => {
        let body = "";
        res.on("data", (chunk: Buffer) => {
          body += chunk.toString();
        });
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, body, headers: res.headers, upgraded: false }),
        );
      });
      req.on("error", reject);
      req.end();
    });
    expect(answer.status).toBe(401);
    expect(answer.body).toBe("");
  });

  it("wakes nothing for a refused handshake: no stream or request handler runs", async () => {
    const node = await startNode("node-b");
    let woken = 0;
    node.server.onStream(() => {
      woken++;
    });
    node.server.onRequest(() => {
      woken++;
      return { payload: null };
    });
    node.server.onLink(() => {
      woken++;
    });
    const ws = new WebSocket(`ws://${node.address}`, {
      headers: { origin: "https://evil.example" },
    });
    ws.on("error", () => {});
    const status = await new Promise<number>((resolve) =>
      ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0)),
    );
    expect(status).toBe(401);
    expect(woken).toBe(0);
  });

  it("never writes a credential into a log line", async () => {
    const node = await startNode("node-b");
    const tokens = [
      await craft("another-secret-0123456789-abcdefghijklmnop", {
        peer: node.id,
        iat: now(),
        exp: now() + 30,
      }),
      await craft(CLUSTER_SECRET, { peer: node.id, iat: now() - 90, exp: now() - 60 }),
      await credential(node),
    ];
    for (const token of tokens) {
      await handshake(node.port, { authorization: `Bearer ${token}`, origin: "https://x.example" });
      await handshake(node.port, { authorization: `Bearer ${token}` });
    }
    await waitFor(() => node.logs.filter((l) => l.event === "link_refused").length >= 5);
    const text = node.logText();
    for (const token of tokens) {
      for (const part of token.split(".").filter((p) => p.length > 8)) {
        expect(text).not.toContain(part);
      }
    }
  });
});

describe("LinkServer: handshakes are bounded in time", () => {
  it("drops a connection that does not finish its handshake within handshakeTimeoutMs", async () => {
    const node = await startNode("node-b", { handshakeTimeoutMs: 500 });
    const socket = connect(node.port, "127.0.0.1");
    socket.on("error", () => {});
    await new Promise((resolve) => socket.once("connect", resolve));
    const started = performance.now();
    // Half a request line, then nothing: a slow-loris on the link port.
    socket.write("GET / HTTP/1.1\r\nHost: x\r\n");
    let answer = "";
    socket.on("data", (chunk: Buffer) => {
      answer += chunk.toString();
    });
    await within(new Promise((resolve) => socket.once("close", resolve)), 10_000, "drop");
    const ms = performance.now() - started;
    expect(ms).toBeGreaterThanOrEqual(400);
    expect(answer).not.toContain("101");
    expect(node.server.links()).toHaveLength(0);
  });
});

describe("LinkServer: frames from a peer are bounded", () => {
  async function rawLink(node: TestNode): Promise<WebSocket> {
    const ws = new WebSocket(`ws://${node.address}`, {
      headers: { authorization: `Bearer ${await credential(node)}` },
    });
    ws.on("error", () => {});
    await new Promise((resolve) => ws.once("open", resolve));
    return ws;
  }

  function closeCode(ws: WebSocket): Promise<number> {
    return new Promise((resolve) => ws.once("close", (code) => resolve(code)));
  }

  it("closes a link whose peer sends a frame over maxFrameBytes with 1009", async () => {
    const node = await startNode("node-b", { maxFrameBytes: 64 * 1024 });
    const ws = await rawLink(node);
    const closed = closeCode(ws);
    ws.send(Buffer.alloc(64 * 1024 + 1));
    expect(await closed).toBe(1009);
    // The node still takes links.
    const again = await rawLink(node);
    expect(again.readyState).toBe(WebSocket.OPEN);
    again.close();
  });

  it("closes a link whose peer sends text or a malformed frame with 1008", async () => {
    const node = await startNode("node-b");
    const text = await rawLink(node);
    const textClosed = closeCode(text);
    text.send("hello");
    expect(await textClosed).toBe(1008);
    const garbage = await rawLink(node);
    const garbageClosed = closeCode(garbage);
    garbage.send(Buffer.from([99, 0, 0, 0, 1]));
    expect(await garbageClosed).toBe(1008);
  });

  it("closes a link whose peer sends past its stream credit with 1008", async () => {
    const window = 16 * 1024;
    const node = await startNode("node-b", {
      window,
      maxFrameBytes: 8 * 1024,
      maxBufferedBytes: 16 * 1024,
    });
    node.server.onStream((stream) => stream.pause());
    const ws = await rawLink(node);
    const closed = closeCode(ws);
    // Open stream 1 by hand, then ignore the credit the node grants.
    const open = await import("../../src/cluster/link-frames.js");
    ws.send(open.encodeOpen(1, window, { agent: "counter", name: "room-1" }, {}));
    for (let i = 0; i < 8; i++) ws.send(encodeData(1, Buffer.alloc(8 * 1024 - 16)));
    expect(await closed).toBe(1008);
  });

  it("survives 400 fuzzed frames from an authenticated peer while a bystander link keeps answering", async () => {
    const node = await startNode("node-b", { maxFrameBytes: 64 * 1024 });
    node.server.onStream((stream) => stream.onMessage((data) => stream.send(data)));
    node.server.onRequest(({ payload }) => ({ payload }));
    const bystander = await startNode("node-c");
    const link = await bystander.pool.get(node.id, node.address);
    const frame = fc.oneof(
      // Well-formed headers of every type with random bodies, and random bytes.
      fc
        .tuple(fc.integer({ min: 0, max: 9 }), fc.nat(), fc.uint8Array({ maxLength: 48 }))
        .map(([type, n, body]) => {
          const head = Buffer.alloc(5);
          head.writeUInt8(type, 0);
          head.writeUInt32BE(n % 16, 1);
          return Buffer.concat([head, body]);
        }),
      fc.uint8Array({ maxLength: 32 }).map((b) => Buffer.from(b)),
    );
    const frames = fc.sample(frame, { numRuns: 400, seed: 11 });
    let closes = 0;
    let ws = await rawLink(node);
    for (const [i, bytes] of frames.entries()) {
      if (ws.readyState !== WebSocket.OPEN) {
        closes++;
        ws = await rawLink(node);
      }
      ws.send(bytes);
      if (i % 50 === 49) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        expect((await link.request({ agent: "counter", name: "room-1" }, i)).payload).toBe(i);
      }
    }
    ws.close();
    console.log(
      `400 fuzzed frames: ${closes} links closed by the node, bystander answered throughout`,
    );
    expect(link.isOpen).toBe(true);
    expect(closes).toBeGreaterThan(0);
  });

  it("refuses to send a frame over maxFrameBytes instead of breaking the link", async () => {
    const owner = await startNode("node-b", { maxFrameBytes: 64 * 1024 });
    const edge = await startNode("node-a", { maxFrameBytes: 64 * 1024 });
    owner.server.onRequest(({ payload }) => ({ payload }));
    const link = await edge.pool.get(owner.id, owner.address);
    const stream = link.openStream({ agent: "counter", name: "room-1" }, {});
    expect(() => stream.send(Buffer.alloc(64 * 1024))).toThrow(LinkError);
    await expect(
      link.request({ agent: "counter", name: "room-1" }, "x".repeat(64 * 1024)),
    ).rejects.toMatchObject({ code: "ERR_LINK_FRAME_TOO_LARGE" });
    await expect(link.request({ agent: "counter", name: "room-1" }, "ok")).resolves.toEqual({
      payload: "ok",
    });
  });
});

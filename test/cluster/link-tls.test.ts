import { randomBytes } from "node:crypto";
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { createKeySet, issueToken } from "../../src/auth/index.js";
import { ClusterOptionError } from "../../src/cluster/errors.js";
import { advertiseAddress, resolveClusterOptions } from "../../src/cluster/options.js";
import { createTestCa, type TestCa } from "../helpers/certs.js";
import { collect, startNode, stopNodes } from "../helpers/links.js";
import { tempDir } from "../helpers/server.js";
import { waitFor, within } from "../helpers/wait.js";
import { connect } from "../helpers/ws-client.js";
import { type TestNode as ServeNode, startNode as startServeNode } from "./cluster-nodes.js";
import { createTestSchema } from "./postgres.js";

/**
 * `cluster.tls`: mutual TLS on node links. What crosses the network between two nodes
 * cannot be read, and only a node holding a certificate of the cluster's CA can link.
 */

let ca: TestCa;
let stranger: TestCa;
const room = { agent: "room", name: "lobby" };
const MARKER = "only-the-two-nodes-may-read-this";
const proxies: Server[] = [];

beforeAll(() => {
  ca = createTestCa();
  stranger = createTestCa("someone-else");
});
afterAll(() => {
  ca.remove();
  stranger.remove();
});
afterEach(async () => {
  for (const proxy of proxies.splice(0)) proxy.close();
  await stopNodes();
});

/** A TCP relay to `port` that keeps every byte that crosses it, both ways. */
async function wiretap(port: number): Promise<{ address: string; bytes: () => Buffer }> {
  const seen: Buffer[] = [];
  const sockets: Socket[] = [];
  const proxy = createServer((client) => {
    const upstream = tcpConnect(port, "127.0.0.1");
    sockets.push(client, upstream);
    client.on("data", (chunk: Buffer) => {
      seen.push(chunk);
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      seen.push(chunk);
      client.write(chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  proxy.on("close", () => {
    for (const socket of sockets) socket.destroy();
  });
  proxies.push(proxy);
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  const { port: relay } = proxy.address() as { port: number };
  return { address: `127.0.0.1:${relay}`, bytes: () => Buffer.concat(seen) };
}

/** Node B answers requests and echoes streams; A dials it through a wiretap. */
async function exchange(tls: boolean) {
  const owner = await startNode("node-b", tls ? { tls: ca.issue() } : {});
  owner.server.onRequest(({ payload }) => ({ payload: { echoed: payload } }));
  owner.server.onStream((stream) => stream.onMessage((data) => stream.send(data)));
  const edge = await startNode("node-a", tls ? { tls: ca.issue() } : {});
  const tap = await wiretap(owner.port);
  const link = await edge.pool.get(owner.id, tap.address);
  const reply = await link.request(room, { text: MARKER });
  expect(reply.payload).toEqual({ echoed: { text: MARKER } });
  const opened = link.openStream(room);
  const stream = collect(opened);
  opened.send(`stream:${MARKER}`);
  await waitFor(() => stream.messages.length === 1, "the stream's echo");
  expect(String(stream.messages[0])).toBe(`stream:${MARKER}`);
  return tap.bytes();
}

describe("cluster.tls: what crosses the network between nodes cannot be read", () => {
  it("a request and a stream reach the peer over TLS, and none of their bytes, nor the link credential, is readable on the wire", async () => {
    const wire = await exchange(true);
    expect(wire.length).toBeGreaterThan(0);
    expect(wire.includes(MARKER)).toBe(false);
    expect(wire.includes("Bearer")).toBe(false);
    expect(wire.includes("x-outpost-node")).toBe(false);
  });

  it("without it, the same exchange is readable on the wire (what the option is for)", async () => {
    const wire = await exchange(false);
    expect(wire.includes(MARKER)).toBe(true);
    expect(wire.includes("Bearer")).toBe(true);
  });
});

describe("cluster.tls: only a node with a certificate of the cluster's CA can link", () => {
  it("a node whose certificate another CA signed cannot dial in, and says so in both logs", async () => {
    const owner = await startNode("node-b", { tls: ca.issue() });
    // Trusts the cluster's CA, but presents a certificate someone else signed.
    const intruder = await startNode("node-x", { tls: { ...stranger.issue(), ca: ca.ca } });
    const error = await intruder.pool.get(owner.id, owner.address).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ERR_LINK_UNAVAILABLE" });
    expect(owner.server.links()).toHaveLength(0);
    await waitFor(() => owner.logs.some((l) => l.event === "link_tls_refused"), "the refusal");
  });

  it("a node refuses to dial a peer whose certificate another CA signed", async () => {
    const impostor = await startNode("node-b", { tls: { ...stranger.issue(), ca: ca.ca } });
    let handled = false;
    impostor.server.onRequest(() => {
      handled = true;
      return { payload: null };
    });
    const edge = await startNode("node-a", { tls: ca.issue() });
    const error = await edge.pool.get(impostor.id, impostor.address).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ERR_LINK_UNAVAILABLE" });
    expect(handled).toBe(false);
    expect(edge.logs.find((l) => l.event === "link_tls_failed")).toMatchObject({
      peer: "node-b",
    });
  });

  it("a certificate that does not name the peer's address is refused", async () => {
    const owner = await startNode("node-b", { tls: ca.issue("DNS:elsewhere.example") });
    const edge = await startNode("node-a", { tls: ca.issue() });
    const error = await edge.pool.get(owner.id, owner.address).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ERR_LINK_UNAVAILABLE" });
    expect(edge.logs.find((l) => l.event === "link_tls_failed")).toMatchObject({
      code: "ERR_TLS_CERT_ALTNAME_INVALID",
    });
  });

  it("a TLS node never falls back to plain TCP, and a plain node cannot link to it", async () => {
    const plain = await startNode("node-p");
    const secure = await startNode("node-s", { tls: ca.issue() });
    // As the cluster's `nodes` table lists them: with their scheme.
    const toPlain = await secure.pool
      .get(plain.id, `ws://127.0.0.1:${plain.port}`)
      .catch((e: unknown) => e);
    expect(toPlain).toMatchObject({ code: "ERR_LINK_UNAVAILABLE" });
    expect(secure.logs.some((l) => l.event === "link_tls_mismatch")).toBe(true);
    expect(plain.server.links()).toHaveLength(0);
    const toSecure = await plain.pool
      .get(secure.id, `wss://127.0.0.1:${secure.port}`)
      .catch((e: unknown) => e);
    expect(toSecure).toMatchObject({ code: "ERR_LINK_UNAVAILABLE" });
    expect(secure.server.links()).toHaveLength(0);
    // Without a certificate of the cluster's CA (a plain node dialing wss://, as it would
    // through a TLS proxy in front of a peer), the handshake is refused.
    const ws = new WebSocket(`ws://127.0.0.1:${secure.port}/`);
    const outcome = await within(
      new Promise<string>((resolve) => {
        ws.on("unexpected-response", (_req, res) => resolve(`http ${res.statusCode}`));
        ws.on("open", () => resolve("open"));
        ws.on("error", () => resolve("error"));
      }),
      5_000,
      "the plain handshake's end",
    );
    expect(outcome).toBe("error");
  });
});

describe("cluster.tls is checked at startup", () => {
  const base = { postgres: "postgres://postgres@127.0.0.1:5432/test" };

  it("names the part that is missing or not PEM, and never prints the key", () => {
    const tls = ca.issue();
    const error = (() => {
      try {
        resolveClusterOptions({ ...base, tls: { cert: tls.cert, key: "not a key", ca: tls.ca } });
      } catch (e) {
        return e as ClusterOptionError;
      }
    })();
    expect(error).toBeInstanceOf(ClusterOptionError);
    expect(error?.option).toBe("cluster.tls.key");
    expect(() => resolveClusterOptions({ ...base, tls: { cert: tls.cert, key: tls.key } })).toThrow(
      /cluster\.tls\.ca must be PEM/,
    );
  });

  it("refuses a key that is not the certificate's", () => {
    const one = ca.issue();
    const other = ca.issue();
    let message = "";
    try {
      resolveClusterOptions({ ...base, tls: { ...one, key: other.key } });
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/^cluster\.tls cannot be used: /);
    expect(message).not.toContain("PRIVATE KEY");
  });

  it("advertises wss:// with TLS, and refuses an advertise address that disagrees", () => {
    const tls = ca.issue();
    const resolved = resolveClusterOptions({ ...base, tls });
    expect(advertiseAddress(resolved, { hostname: "127.0.0.1", port: 7001 })).toBe(
      "wss://127.0.0.1:7001",
    );
    expect(() => resolveClusterOptions({ ...base, tls, advertise: "ws://10.0.0.5:7001" })).toThrow(
      /cluster\.advertise must be a wss:\/\/ address/,
    );
  });
});

describe("serve({ cluster: { tls } })", () => {
  it("two nodes with mutual TLS: a client on A reaches the instance B owns, and B's link address is wss://", async () => {
    const schema = await createTestSchema();
    const secret = randomBytes(32).toString("base64url");
    const dirs = [tempDir(), tempDir()];
    const nodes: ServeNode[] = [];
    try {
      for (const [i, id] of ["node-a", "node-b"].entries()) {
        nodes.push(
          await startServeNode(id, {
            dataDir: dirs[i]!.dir,
            schema: schema.schema,
            secret,
            tls: ca.issue(),
          }),
        );
      }
      const [a, b] = nodes as [ServeNode, ServeNode];
      const keys = await createKeySet({ secret });
      const url = async (at: ServeNode) =>
        `ws://127.0.0.1:${at.port}/agents/room/tls-lobby?token=${await issueToken(keys, { sub: "u", agent: "room", name: "tls-lobby" })}`;
      const onB = await connect(await url(b));
      expect(await onB.rpc("where")).toBe("node-b");
      const onA = await connect(await url(a));
      expect(await onA.rpc("where")).toBe("node-b");
      expect(await onA.rpc("post", ["over tls"])).toBe(1);
      expect(await onB.rpc("texts")).toEqual(["over tls"]);
      const rows = await schema.sql<{ address: string }[]>`
        SELECT address FROM ${schema.sql(schema.schema)}.nodes ORDER BY id`;
      expect(rows.map((r) => r.address.split(":")[0])).toEqual(["wss", "wss"]);
      await Promise.all([onA.close(), onB.close()]);
    } finally {
      await Promise.all(nodes.map((n) => n.kill("SIGKILL")));
      await schema.drop();
      for (const dir of dirs) dir.remove();
    }
  }, 60_000);
});

import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { type AddressInfo, createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type LoadBalancer,
  nginxAvailable,
  startLoadBalancer,
} from "../../examples/demo/server/load-balancer.js";
import { createKeySet, issueToken, type KeySet } from "../../src/auth/index.js";
import { tempDir } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";
import { connect, type RawClient } from "../helpers/ws-client.js";
import { startNode, type TestNode } from "./cluster-nodes.js";
import { createTestSchema, type TestSchema } from "./postgres.js";

/**
 * Three node processes behind a real nginx (Debian's package), round robin with no
 * stickiness: clients only ever reach the cluster through the balancer, whichever node it
 * hands them to.
 */

const INSTALL = fileURLToPath(new URL("../../scripts/install-nginx.sh", import.meta.url));

/** nginx is here, or this process may install it; otherwise the file is skipped, saying why. */
function ensureNginx(): boolean {
  if (nginxAvailable()) return true;
  if (process.getuid?.() !== 0) return false;
  execFileSync("bash", [INSTALL], { stdio: "inherit" });
  return nginxAvailable();
}

const HAVE_NGINX = ensureNginx();
if (!HAVE_NGINX) {
  console.warn(
    "test/cluster/nginx.test.ts skipped: nginx is not installed and this user cannot install it (run scripts/install-nginx.sh as root).",
  );
}

const SECRET = randomBytes(32).toString("base64url");
let keys: KeySet;
let schema: TestSchema;
let balancer: LoadBalancer;
const dirs: Array<{ remove(): void }> = [];
const nodes: TestNode[] = [];
const clients: RawClient[] = [];

/** A client of `room`, through nginx only. */
async function open(room: string, sub: string): Promise<RawClient> {
  const token = await issueToken(keys, { sub, agent: "room", name: room });
  const client = await connect(
    `ws://127.0.0.1:${balancer.port}/agents/room/${room}?token=${token}`,
  );
  clients.push(client);
  return client;
}

function postsReached(n: number) {
  return (m: unknown) =>
    typeof m === "object" && (m as { state?: { posts?: number } }).state?.posts === n;
}

describe.skipIf(!HAVE_NGINX)("three nodes behind nginx, round robin, no stickiness", () => {
  beforeAll(async () => {
    keys = await createKeySet({ secret: SECRET });
    schema = await createTestSchema();
    const start = (id: string) => {
      const dir = tempDir(`outpost-${id}-`);
      dirs.push(dir);
      // Kept as soon as it runs, so afterAll stops it even when another node failed.
      return startNode(id, { dataDir: dir.dir, schema: schema.schema, secret: SECRET }).then(
        (node) => {
          nodes.push(node);
          return node;
        },
      );
    };
    // The first node creates the tables the schema does not have yet (the change log, the
    // link secret); nodes doing that at the same moment can collide in PostgreSQL's catalog.
    const started = [await start("lb-a")];
    started.push(...(await Promise.all([start("lb-b"), start("lb-c")])));
    balancer = await startLoadBalancer(started.map((n) => n.port));
  }, 60_000);

  afterAll(async () => {
    for (const client of clients) client.ws.terminate();
    await balancer?.close();
    await Promise.all(nodes.map((n) => n.kill("SIGKILL")));
    await schema?.drop();
    for (const dir of dirs) dir.remove();
  });

  it("every client of one room sees one owner and each other's writes, though nginx spread them over all three nodes", async () => {
    const names = ["ann", "ben", "cat", "dan", "eve", "fay"];
    const room: RawClient[] = [];
    for (const name of names) room.push(await open("lobby", name));
    const owners = await Promise.all(room.map((c) => c.rpc<string>("where")));
    expect(new Set(owners).size).toBe(1);
    expect(["lb-a", "lb-b", "lb-c"]).toContain(owners[0]);
    for (const [i, client] of room.entries()) await client.rpc("post", [`from ${names[i]}`]);
    for (const client of room) {
      await client.waitFor(postsReached(names.length), "the state after every post", 10_000);
      for (const name of names) {
        await client.waitFor(
          (m) => typeof m === "object" && (m as { text?: string }).text === `from ${name}`,
          `the broadcast from ${name}`,
          10_000,
        );
      }
    }
    expect(await room[0]!.rpc("texts")).toEqual(names.map((n) => `from ${n}`));
    // nginx logs a WebSocket when it closes: close them, then read which node each reached.
    await Promise.all(room.map((c) => c.close()));
    const upgrades = () =>
      balancer.accessLog().filter((e) => e.uri === "/agents/room/lobby" && e.status === 101);
    await waitFor(() => upgrades().length === names.length, "nginx to log every socket", 10_000);
    const edges = new Set(upgrades().map((e) => e.upstream));
    console.log(`nginx spread ${names.length} sockets of one room over ${edges.size} nodes`);
    expect(edges.size).toBe(3);
    // The query string (the token) is never in nginx's log.
    expect(JSON.stringify(balancer.accessLog())).not.toContain("token");
  }, 60_000);

  it("kill -9 of the owner: clients reconnect through nginx and the instance answers again with every acknowledged write", async () => {
    const names = ["gus", "hal", "ivy", "jo", "kim", "lou"];
    const room: RawClient[] = [];
    for (const name of names) room.push(await open("failover", name));
    const ownerId = await room[0]!.rpc<string>("where");
    const acknowledged: string[] = [];
    for (const [i, client] of room.entries()) {
      await client.rpc("post", [`before ${i}`]);
      acknowledged.push(`before ${i}`);
    }
    const owner = nodes.find((n) => n.id === ownerId)!;
    await owner.kill("SIGKILL");
    const killedAt = Date.now();
    // Sockets on the dead node drop (nginx loses its upstream); those on the others are
    // closed 1013 by their edge. Either way every client learns and reconnects.
    const closes = await Promise.all(room.map((c) => c.closed));
    for (const closed of closes) expect([1006, 1013]).toContain(closed.code);
    const backAfter: number[] = [];
    const answeredBy = await Promise.all(
      names.map(async (name) => {
        for (;;) {
          try {
            const client = await open("failover", name);
            const where = await client.rpc<string>("where", [], 5_000);
            backAfter.push(Date.now() - killedAt);
            return { client, where };
          } catch {
            if (Date.now() - killedAt > 20_000) throw new Error(`${name} could not reconnect`);
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        }
      }),
    );
    const slowest = Math.max(...backAfter) / 1000;
    const fastest = Math.min(...backAfter) / 1000;
    console.log(
      `kill -9 of the owner behind nginx: clients answered again after ${fastest.toFixed(2)}–${slowest.toFixed(2)} s`,
    );
    const newOwners = new Set(answeredBy.map((a) => a.where));
    expect(newOwners.size).toBe(1);
    expect([...newOwners][0]).not.toBe(ownerId);
    const texts = await answeredBy[0]!.client.rpc<string[]>("texts");
    for (const text of acknowledged) expect(texts).toContain(text);
    expect(await answeredBy[1]!.client.rpc("post", ["after"])).toBe(acknowledged.length + 1);
    expect(slowest).toBeLessThan(10);
  }, 60_000);
});

describe.skipIf(!HAVE_NGINX)("starting nginx", () => {
  it("a port another program holds is reported as nginx's own error, not a false start", async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
    const { port } = holder.address() as AddressInfo;
    try {
      await expect(startLoadBalancer([1], { port })).rejects.toThrow(/Address already in use/);
    } finally {
      holder.close();
    }
  }, 30_000);
});

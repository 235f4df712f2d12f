/**
 * `npm run cluster`, briefly: the demo on three node processes behind nginx and the local
 * PostgreSQL. A client signs in at the identity provider, connects through nginx only, and
 * the script prints which node owns the room; kill -9 that node and it prints the new one.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nginxAvailable } from "../../examples/demo/server/load-balancer.js";
import { POSTGRES_URL } from "../cluster/postgres.js";
import { waitFor } from "../helpers/wait.js";
import { connect, type RawClient } from "../helpers/ws-client.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const SCHEMA = `test_demo_${randomBytes(6).toString("hex")}`;
const HAVE_NGINX = nginxAvailable();
if (!HAVE_NGINX) {
  console.warn(
    "test/e2e/cluster-demo.test.ts skipped: nginx is not installed (run scripts/install-nginx.sh as root).",
  );
}

let demo: ChildProcess | undefined;
let dataDir: string | undefined;
const output: string[] = [];
const clients: RawClient[] = [];

function line(pattern: RegExp, what: string): Promise<RegExpMatchArray> {
  return waitFor(() => output.some((l) => pattern.test(l)), what, 30_000).then(
    () => output.find((l) => pattern.test(l))!.match(pattern)!,
  );
}

/** Sign in at the identity provider and fetch a token for the room, as the page does. */
async function tokenFor(appUrl: string, user: string): Promise<string> {
  const login = await fetch(`${appUrl}/api/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user }),
  });
  const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
  const answer = await fetch(`${appUrl}/api/token?name=lobby`, { headers: { cookie } });
  return ((await answer.json()) as { token: string }).token;
}

describe.skipIf(!HAVE_NGINX)("npm run cluster", { timeout: 90_000 }, () => {
  let appUrl: string;
  let agentUrl: string;
  const pids = new Map<string, number>();

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "outpost-cluster-demo-"));
    demo = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        "examples/demo/cluster.ts",
        "--skip-build",
        "--app-port",
        "0",
        "--agent-port",
        "0",
        "--data-dir",
        dataDir,
      ],
      {
        cwd: ROOT,
        stdio: ["ignore", "pipe", "inherit"],
        env: {
          ...process.env,
          OUTPOST_POSTGRES: POSTGRES_URL,
          OUTPOST_CLUSTER_SCHEMA: SCHEMA,
          OUTPOST_LOG_LEVEL: "warn",
        },
      },
    );
    createInterface({ input: demo.stdout! }).on("line", (l) => output.push(l));
    appUrl = (await line(/App \(identity provider\): (\S+)/, "the app's URL"))[1]!;
    agentUrl = (await line(/Agent servers via nginx: (\S+)/, "nginx's URL"))[1]!;
    for (const n of [1, 2, 3]) {
      const [, pid] = await line(new RegExp(`node-${n}: \\S+ \\(pid (\\d+)\\)`), `node-${n}`);
      pids.set(`node-${n}`, Number(pid));
    }
  }, 90_000);

  afterAll(async () => {
    for (const client of clients) client.ws.terminate();
    if (demo !== undefined && demo.exitCode === null) {
      const exited = new Promise((resolve) => demo!.once("exit", resolve));
      demo.kill("SIGTERM");
      await exited;
    }
    const sql = postgres(POSTGRES_URL, { max: 1, onnotice: () => {} });
    await sql`DROP SCHEMA IF EXISTS ${sql(SCHEMA)} CASCADE`;
    await sql.end({ timeout: 1 });
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
  });

  it("a client reaches the room through nginx and the script prints which node owns it, then the new owner after kill -9", async () => {
    const url = `${agentUrl.replace("http://", "ws://")}/agents/room/lobby`;
    const origin = { headers: { origin: appUrl } };
    const client = await connect(`${url}?token=${await tokenFor(appUrl, "ada")}`, origin);
    clients.push(client);
    const sent = await client.rpc<{ text: string }>("post", ["hello from the cluster"]);
    expect(sent.text).toBe("hello from the cluster");
    const [, owner] = await line(/^room\/lobby is owned by (node-\d)$/, "the owner line");
    expect(pids.has(owner!)).toBe(true);

    process.kill(pids.get(owner!)!, "SIGKILL");
    await client.closed;
    // Back through nginx, on another node, with the line posted before.
    let again: RawClient | undefined;
    await waitFor(
      async () => {
        try {
          again = await connect(`${url}?token=${await tokenFor(appUrl, "ada")}`, origin);
          clients.push(again);
          return true;
        } catch {
          return false;
        }
      },
      "a reconnect through nginx",
      30_000,
    );
    const moved = new RegExp(`^room/lobby is owned by (?!${owner}$)(node-\\d)$`);
    const [, next] = await line(moved, "the new owner line");
    expect(next).not.toBe(owner);
    const state = await again!.waitFor(
      (m) => typeof m === "object" && (m as { type?: string }).type === "cf_agent_state",
      "the room's state",
    );
    expect(JSON.stringify(state)).toContain("hello from the cluster");
  });
});

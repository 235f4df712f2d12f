/**
 * `npm run cluster`: the demo on three Outpost nodes behind nginx, on the local PostgreSQL.
 * The app and its identity provider run here; each agent server is a process of its own,
 * and the browser reaches them only through nginx (round robin, no stickiness). Prints
 * which node owns each room, and again whenever that changes (kill a node to see it).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { type DemoConfig, HELP, readConfig } from "./server/config.js";
import { createIdentityProvider } from "./server/identity-provider.js";
import { freePort, startLoadBalancer } from "./server/load-balancer.js";

const NODE_SCRIPT = fileURLToPath(new URL("./server/cluster-node.ts", import.meta.url));
const NODES = 3;
const POSTGRES = process.env.OUTPOST_POSTGRES ?? "postgres://postgres@127.0.0.1:5432/test";
const SCHEMA = process.env.OUTPOST_CLUSTER_SCHEMA ?? "outpost_demo";
/** Every node process started, so that a failed start leaves none behind. */
const children: ChildProcess[] = [];

async function main(): Promise<void> {
  let config: DemoConfig | "help";
  try {
    config = readConfig(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${HELP}`);
    process.exit(2);
  }
  if (config === "help") {
    process.stdout.write(
      `npm run cluster -- [the options of npm start]\n\n--agent-port is nginx's port. PostgreSQL: OUTPOST_POSTGRES (default ${POSTGRES}), schema OUTPOST_CLUSTER_SCHEMA (default ${SCHEMA}).\n\n${HELP}`,
    );
    return;
  }
  if (!config.skipBuild) {
    process.stdout.write("Building the app with Vite…\n");
    const { buildApp } = await import("./server/build-app.js");
    await buildApp(config.distDir);
  }

  // Every node must know the origin the browser sees, nginx's, before nginx can start
  // (it needs their ports): so its port is chosen first.
  const balancerPort = config.agentPort === 0 ? await freePort() : config.agentPort;
  const agentOrigin = `http://localhost:${balancerPort}`;
  const app = createServer((req, res) => {
    idp.handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((resolve) => app.listen(config.appPort, "127.0.0.1", resolve));
  const appOrigin = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
  const idp = await createIdentityProvider({
    appOrigin,
    agentOrigin,
    refreshTtl: config.refreshTtl,
    tokenTtl: config.tokenTtl,
    distDir: config.distDir,
  });

  const cookieSecret = randomBytes(32).toString("base64url");
  const start = (i: number) =>
    startNode(`node-${i}`, {
      DEMO_NODE: `node-${i}`,
      DEMO_AGENT_ORIGIN: agentOrigin,
      DEMO_APP_ORIGIN: appOrigin,
      DEMO_DATA_DIR: `${config.dataDir}/node-${i}`,
      DEMO_DIST_DIR: config.distDir,
      DEMO_COOKIE_SECRET: cookieSecret,
      DEMO_POSTGRES: POSTGRES,
      DEMO_SCHEMA: SCHEMA,
    });
  // The first node creates the cluster's tables; the others join once they exist (nodes
  // creating a fresh schema at the same moment can collide on PostgreSQL's catalog).
  const ports = [await start(1)];
  ports.push(...(await Promise.all(Array.from({ length: NODES - 1 }, (_, i) => start(i + 2)))));
  const balancer = await startLoadBalancer(ports, { port: balancerPort });
  process.stdout.write(
    [
      "",
      `Outpost demo on ${NODES} nodes behind nginx (PostgreSQL schema "${SCHEMA}"):`,
      `  App (identity provider): ${appOrigin}`,
      `  Agent servers via nginx: ${agentOrigin}`,
      ...ports.map((port, i) => `  node-${i + 1}: 127.0.0.1:${port} (pid ${children[i]!.pid})`),
      "",
      "Open the app in two tabs; kill a node (kill -9 <pid>) and watch the room move.",
      "Press Ctrl-C to stop everything.",
      "",
    ].join("\n"),
  );
  const stopWatching = watchOwners();

  const shutdown = (signal: NodeJS.Signals) => {
    process.stdout.write(`\n${signal}: stopping nginx and the nodes…\n`);
    process.once(signal, () => process.exit(1));
    (async () => {
      await stopWatching();
      await balancer.close();
      await Promise.all(children.map((child) => stopChild(child)));
      await new Promise<void>((resolve) => {
        app.close(() => resolve());
        app.closeAllConnections();
      });
    })().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGINT", shutdown);
  process.once("SIGTERM", shutdown);
}

/** Start one node; resolves with its HTTP port. Its output (its logs) goes to ours. */
async function startNode(id: string, env: Record<string, string>): Promise<number> {
  const child = spawn(process.execPath, ["--import", "tsx", NODE_SCRIPT], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, ...env },
  });
  children.push(child);
  const lines = createInterface({ input: child.stdout! });
  const exited = once(child, "exit");
  let port: number | undefined;
  const first = new Promise<number>((resolve, reject) => {
    lines.on("line", (line) => {
      if (port === undefined && line.startsWith('{"port"')) {
        port = (JSON.parse(line) as { port: number }).port;
        resolve(port);
      } else {
        process.stdout.write(`[${id}] ${line}\n`);
      }
    });
    exited.then(() => reject(new Error(`${id} exited before it listened`)));
  });
  exited.then(() => {
    if (port !== undefined) process.stdout.write(`${id} exited\n`);
  });
  return first;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  await exited;
}

/**
 * Print `room/lobby is owned by node-2` for every instance whose live owner changed, read
 * from the cluster's own tables once a second.
 */
function watchOwners(): () => Promise<void> {
  const sql = postgres(POSTGRES, { max: 1, onnotice: () => {} });
  const seen = new Map<string, string>();
  let stopped = false;
  const tick = async () => {
    try {
      const rows = await sql<{ instance: string; node_id: string | null }[]>`
        SELECT o.instance, n.id AS node_id FROM ${sql(SCHEMA)}.owners o
        LEFT JOIN ${sql(SCHEMA)}.nodes n ON n.id = o.node_id AND n.lease_expires_at > now()`;
      for (const row of rows) {
        const owner = row.node_id ?? "nobody (its owner's lease is running out)";
        if (seen.get(row.instance) !== owner) {
          seen.set(row.instance, owner);
          process.stdout.write(`${row.instance} is owned by ${owner}\n`);
        }
      }
    } catch {
      // The tables appear once the first node has joined; PostgreSQL may be restarting.
    }
  };
  const timer = setInterval(() => {
    if (!stopped) void tick();
  }, 1_000);
  return async () => {
    stopped = true;
    clearInterval(timer);
    await sql.end({ timeout: 1 });
  };
}

main().catch((error) => {
  process.stderr.write(`the cluster demo could not start: ${(error as Error).message}\n`);
  for (const child of children) child.kill("SIGKILL");
  process.exit(1);
});

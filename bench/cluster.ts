/**
 * `npm run bench -- --cluster`: what running as a cluster costs, as ratios from one run on
 * one machine: three nodes on the local PostgreSQL (OUTPOST_POSTGRES, default
 * postgres://postgres@127.0.0.1:5432/test, in a schema of its own that is dropped after)
 * and one single-node server beside them.
 *
 * - RPC p50/p99 from a client on a node that does not own the instance (relayed over a node
 *   link) vs a client on the owner.
 * - Write turns per second with the output gate (each answer waits for PostgreSQL) vs the
 *   single-node server.
 * - Connects per second spread over three nodes vs one single-node server.
 * - Restore time vs database size; failover time after kill -9 of an owner.
 *
 * Timings are printed and written to BENCHMARKS.md, never asserted: the machine is shared.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import postgres from "postgres";
import { createKeySet, issueToken, type KeySet } from "../src/auth/index.js";
import { restoreDatabase } from "../src/cluster/restore.js";
import { migrate } from "../src/cluster/schema.js";
import { ChangeStore } from "../src/cluster/wal-store.js";
import { connect, type RawClient } from "../test/helpers/ws-client.js";
import { ROOT } from "./child.js";
import { median, quantile, round } from "./stats.js";

const POSTGRES = process.env.OUTPOST_POSTGRES ?? "postgres://postgres@127.0.0.1:5432/test";
const SCRIPT = join(ROOT, "bench/cluster-node.ts");
const MARK_START = "<!-- cluster-bench:start -->";
const MARK_END = "<!-- cluster-bench:end -->";

interface Node {
  id: string;
  port: number;
  child: ChildProcess;
}

interface ClusterResults {
  date: string;
  quick: boolean;
  cores: number;
  loadavg: number[];
  rpc: { directP50: number; directP99: number; relayedP50: number; relayedP99: number };
  writes: { cluster: number; single: number };
  connects: { cluster: number; single: number };
  restore: Array<{ mib: number; ms: number; rows: number }>;
  failoverS: number;
}

/** Run the cluster benchmark; `argv` without `--cluster`. Resolves with the exit code. */
export async function runClusterBench(argv: string[]): Promise<number> {
  const quick = argv.includes("--quick");
  const writeDocs = argv.includes("--docs") || (!quick && !argv.includes("--no-docs"));
  const outDir = join(ROOT, argv.find((a) => a.startsWith("--out="))?.slice(6) ?? "bench/results");
  const calls = quick ? 1_000 : 4_000;
  const windowMs = quick ? 2_000 : 4_000;
  const sizes = quick ? [1, 4] : [1, 4, 16];

  const schema = `bench_${randomBytes(5).toString("hex")}`;
  const sql = postgres(POSTGRES, { max: 2, onnotice: () => {} });
  await migrate(sql, schema);
  const store = new ChangeStore(sql, { schema });
  await store.migrate();
  const secret = randomBytes(32).toString("base64url");
  const keys = await createKeySet({ secret });
  const dir = mkdtempSync(join(tmpdir(), "outpost-cluster-bench-"));
  const nodes: Node[] = [];
  const clients: RawClient[] = [];
  const start = async (id: string, cluster: boolean) => {
    const node = await startNode(id, {
      id,
      dataDir: join(dir, id),
      secret,
      ...(cluster && { postgres: POSTGRES, schema }),
    });
    nodes.push(node);
    return node;
  };
  const open = async (at: Node, room: string) => {
    const client = await connect(`ws://127.0.0.1:${at.port}${await path(keys, room)}`, {
      record: false,
    });
    clients.push(client);
    return client;
  };
  try {
    log(`PostgreSQL schema ${schema}; ${cpus().length} cores, load ${loadavg()[0]!.toFixed(1)}`);
    const a = await start("node-a", true);
    const [b, c, single] = await Promise.all([
      start("node-b", true),
      start("node-c", true),
      start("single", false),
    ]);

    // RPC: the first client claims the instance for its node (a); b relays.
    const onOwner = await open(a, "rpc");
    if ((await onOwner.rpc("where")) !== "node-a") throw new Error("node-a should own rpc");
    const onEdge = await open(b, "rpc");
    const direct: number[] = [];
    const relayed: number[] = [];
    await roundTrips(onOwner, 200, []);
    await roundTrips(onEdge, 200, []);
    // Paths take turns, so a burst of load from elsewhere hits both alike.
    for (let turn = 0; turn < 10; turn++) {
      await roundTrips(onOwner, calls / 10, direct);
      await roundTrips(onEdge, calls / 10, relayed);
    }
    const rpc = {
      directP50: round(quantile(direct, 0.5), 3),
      directP99: round(quantile(direct, 0.99), 3),
      relayedP50: round(quantile(relayed, 0.5), 3),
      relayedP99: round(quantile(relayed, 0.99), 3),
    };
    log(`RPC direct p50/p99 ${rpc.directP50}/${rpc.directP99} ms`);
    log(`RPC relayed p50/p99 ${rpc.relayedP50}/${rpc.relayedP99} ms`);

    // Write turns: 16 clients on the owner, each with one call in flight.
    const writes = {
      cluster: await writeRate(await Promise.all(range(16).map(() => open(a, "writes"))), windowMs),
      single: await writeRate(
        await Promise.all(range(16).map(() => open(single, "writes"))),
        windowMs,
      ),
    };
    log(`write turns/s: cluster ${writes.cluster}, single node ${writes.single}`);

    // Connects: 48 rooms, their owners spread by whichever node claimed them first.
    const rooms = range(48).map((i) => `c${i}`);
    const paths = await Promise.all(rooms.map((room) => path(keys, room)));
    const cluster3 = [a, b, c];
    const connects = {
      cluster: await connectRate((i) => cluster3[i % 3]!, paths, windowMs),
      single: await connectRate(() => single, paths, windowMs),
    };
    log(`connects/s: 3 nodes ${connects.cluster}, 1 node ${connects.single}`);

    // Restore: grow an instance, then rebuild its file from PostgreSQL as a new owner does.
    const restore: ClusterResults["restore"] = [];
    for (const mib of sizes) {
      const filler = await open(a, `big-${mib}`);
      for (let i = 0; i < mib; i++) await filler.rpc("fill", [1024], 60_000);
      // Three restores, the median reported: one slow disk write on a shared machine is
      // not the restore's cost.
      const runs = [];
      for (let i = 0; i < 3; i++) {
        runs.push(await restoreDatabase(store, `room/big-${mib}`, join(dir, `r-${mib}.db`)));
      }
      const ms = Math.round(median(runs.map((r) => r.ms)));
      restore.push({ mib, ms, rows: runs[0]!.rows });
      log(`restore of ${mib} MiB: ${ms} ms`);
    }

    // Failover: b owns "fail"; kill -9 b; a client on c reconnects until it answers.
    await (await open(b, "fail")).rpc("post", ["x"]);
    const watcher = await open(c, "fail");
    b.child.kill("SIGKILL");
    const killed = performance.now();
    await watcher.closed;
    let failoverS = Number.NaN;
    for (;;) {
      try {
        const back = await open(c, "fail");
        await back.rpc("where", [], 5_000);
        failoverS = round((performance.now() - killed) / 1000, 2);
        break;
      } catch {
        if (performance.now() - killed > 30_000) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    log(`failover: ${failoverS} s`);

    const results: ClusterResults = {
      date: new Date().toISOString(),
      quick,
      cores: cpus().length,
      loadavg: loadavg().map((l) => round(l, 1)),
      rpc,
      writes,
      connects,
      restore,
      failoverS,
    };
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, "cluster-latest.json"), `${JSON.stringify(results, null, 2)}\n`);
    const table = renderTable(results);
    process.stdout.write(`\n${table}\n`);
    if (writeDocs) writeBenchmarksMd(table);
    return 0;
  } finally {
    for (const client of clients) client.ws.terminate();
    await Promise.all(nodes.map((n) => stop(n.child)));
    await sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`;
    await sql.end({ timeout: 1 });
    rmSync(dir, { recursive: true, force: true });
  }
}

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

async function path(keys: KeySet, room: string): Promise<string> {
  const token = await issueToken(keys, { sub: "bench", agent: "room", name: room, ttl: 3600 });
  return `/agents/room/${room}?token=${token}`;
}

/** `n` calls of `ping`, one in flight, each latency (ms) appended to `into`. */
async function roundTrips(client: RawClient, n: number, into: number[]): Promise<void> {
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await client.rpc("ping", [i]);
    into.push(performance.now() - t0);
  }
}

/** Answered `post` calls per second over `windowMs`, each client with one in flight. */
async function writeRate(clients: RawClient[], windowMs: number): Promise<number> {
  const until = performance.now() + windowMs;
  const counts = await Promise.all(
    clients.map(async (client) => {
      let n = 0;
      while (performance.now() < until) {
        await client.rpc("post", ["turn"], 30_000);
        n++;
      }
      return n;
    }),
  );
  return Math.round((counts.reduce((s, n) => s + n, 0) * 1000) / windowMs);
}

/**
 * Connects per second: 16 at a time, each open until its identity (and state) arrived,
 * then closed; rooms taken in turn. One untimed pass first, so every room is placed.
 */
async function connectRate(
  nodeFor: (i: number) => Node,
  paths: string[],
  windowMs: number,
): Promise<number> {
  const once = async (i: number) => {
    const client = await connect(`ws://127.0.0.1:${nodeFor(i).port}${paths[i % paths.length]}`, {
      record: false,
    });
    client.ws.close();
    await client.closed;
  };
  await Promise.all(paths.map((_, i) => once(i)));
  let next = 0;
  let done = 0;
  const started = performance.now();
  const until = started + windowMs;
  await Promise.all(
    range(16).map(async () => {
      while (performance.now() < until) {
        await once(next++);
        done++;
      }
    }),
  );
  return Math.round((done * 1000) / (performance.now() - started));
}

function startNode(id: string, setup: Record<string, unknown>): Promise<Node> {
  const child = spawn(process.execPath, ["--import", "tsx", SCRIPT], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, CLUSTER_BENCH: JSON.stringify(setup) },
  });
  const lines = createInterface({ input: child.stdout! });
  return new Promise((resolve, reject) => {
    lines.once("line", (line) =>
      resolve({ id, child, port: (JSON.parse(line) as { port: number }).port }),
    );
    child.once("exit", () => reject(new Error(`${id} exited before it listened`)));
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGKILL");
  await exited;
}

function ratio(a: number, b: number): string {
  return `${(a / b).toFixed(2)}×`;
}

/** The Markdown table of one run, with the targets checked. */
export function renderTable(r: ClusterResults): string {
  const { rpc } = r;
  const limit = 1.5 * rpc.directP99 + 1;
  const rpcOk = rpc.relayedP99 <= limit;
  const failOk = r.failoverS <= 5;
  const restoreRows = r.restore
    .map(
      (x) =>
        `| restore of ${x.mib} MiB from PostgreSQL (median of 3) | ${x.ms} ms (${x.rows} rows) | | |`,
    )
    .join("\n");
  return `Run of ${r.date}${r.quick ? " (--quick)" : ""} on ${r.cores} cores; load average ${r.loadavg.join(" / ")} — the machine was shared with other test runs, so absolute numbers are noisy; the ratios come from one run with the paths taking turns.

| Measure | Cluster | Reference | Ratio |
|---|---|---|---|
| RPC p50, client on a non-owner node vs on the owner | ${rpc.relayedP50} ms | ${rpc.directP50} ms | ${ratio(rpc.relayedP50, rpc.directP50)} |
| RPC p99, client on a non-owner node vs on the owner | ${rpc.relayedP99} ms | ${rpc.directP99} ms | ${ratio(rpc.relayedP99, rpc.directP99)} |
| write turns/s, output gate (16 clients) vs single node | ${r.writes.cluster} | ${r.writes.single} | ${ratio(r.writes.cluster, r.writes.single)} |
| connects/s, 3 nodes vs 1 single node | ${r.connects.cluster} | ${r.connects.single} | ${ratio(r.connects.cluster, r.connects.single)} |
| failover after kill -9 of the owner (lease 3 s) | ${r.failoverS} s | | |
${restoreRows}

Targets: relayed RPC p99 ≤ 1.5× direct + 1 ms (${rpc.relayedP99} ≤ ${round(limit, 3)} ms: **${rpcOk ? "met" : "missed"}**); failover ≤ 5 s (${r.failoverS} s: **${failOk ? "met" : "missed"}**).`;
}

function writeBenchmarksMd(table: string): void {
  const file = join(ROOT, "BENCHMARKS.md");
  const text = readFileSync(file, "utf8");
  const start = text.indexOf(MARK_START);
  const end = text.indexOf(MARK_END);
  if (start < 0 || end < start) {
    log(`BENCHMARKS.md has no ${MARK_START} … ${MARK_END} section; not rewritten`);
    return;
  }
  writeFileSync(file, `${text.slice(0, start + MARK_START.length)}\n${table}\n${text.slice(end)}`);
  log("BENCHMARKS.md: cluster results rewritten");
}

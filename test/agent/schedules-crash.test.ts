import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { type ChildServer, killChild, spawnServer } from "../helpers/child.js";
import { tempDir } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";
import { connect } from "../helpers/ws-client.js";

const SCRIPT = fileURLToPath(new URL("../fixtures/scheduling-server.ts", import.meta.url));

let data: ReturnType<typeof tempDir> | undefined;
const children: ChildServer[] = [];

afterEach(async () => {
  await Promise.all(children.splice(0).map((c) => killChild(c)));
  data?.remove();
  data = undefined;
});

async function spawn(dir: string): Promise<ChildServer> {
  const child = await spawnServer(SCRIPT, dir, 30_000);
  children.push(child);
  return child;
}

async function kill9(child: ChildServer): Promise<void> {
  child.child.kill("SIGKILL");
  expect(await child.exited).toMatchObject({ signal: "SIGKILL" });
}

interface RunRow {
  seq: number;
  kind: string;
  item: string;
  due: number | null;
  label: string;
  phase: string;
  pid: number;
  at: number;
}

/** The Ticker's `runs` table, read straight from its database file. */
function readRuns(dir: string, name: string): RunRow[] {
  const file = join(dir, "ticker", `${name}.sqlite`);
  if (!existsSync(file)) return [];
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return db.prepare("SELECT * FROM runs ORDER BY seq").all() as RunRow[];
  } catch {
    return []; // the table is made by onStart
  } finally {
    db.close();
  }
}

function queueSize(dir: string, name: string): number {
  const db = new Database(join(dir, "ticker", `${name}.sqlite`), { readonly: true });
  try {
    return (db.prepare("SELECT COUNT(*) AS n FROM _outpost_queue").get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/** (schedule id, due second) pairs that ran more than once. */
function repeatedDueTimes(rows: RunRow[]): string[] {
  const seen = new Map<string, number>();
  for (const row of rows) {
    if (row.kind !== "cron" && row.kind !== "interval") continue;
    const key = `${row.kind}:${row.item}@${row.due}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  return [...seen].filter(([, count]) => count > 1).map(([key]) => key);
}

describe("schedules across crashes and processes", () => {
  it("recurring schedules (cron and interval) survive kill -9 restarts and never fire twice for one due time", async () => {
    data = tempDir("outpost-sched-crash-");
    const dir = data.dir;
    let child = await spawn(dir);
    const client = await connect(`ws://127.0.0.1:${child.port}/agents/ticker/crashy`);
    // Each run holds for 400 ms, so a kill right after a run starts lands in the middle of it.
    await client.rpc("setup", [400]);
    await client.close();
    const pids = new Set<number>();
    for (let cycle = 0; cycle < 4; cycle++) {
      if (cycle > 0) child = await spawn(dir); // no client: the wakeup index starts it
      const before = readRuns(dir, "crashy").length;
      await waitFor(() => readRuns(dir, "crashy").length >= before + 2, "two runs", 20_000);
      const seen = readRuns(dir, "crashy").length;
      await waitFor(() => readRuns(dir, "crashy").length > seen, "a run to start", 20_000);
      await kill9(child);
      for (const row of readRuns(dir, "crashy").slice(before)) pids.add(row.pid);
    }
    const rows = readRuns(dir, "crashy");
    expect(pids.size).toBe(4);
    expect(repeatedDueTimes(rows)).toEqual([]);
    // Both kinds kept running in every process after the first.
    for (const kind of ["cron", "interval"]) {
      expect(new Set(rows.filter((r) => r.kind === kind).map((r) => r.pid)).size).toBe(4);
    }
  }, 120_000);

  it("two processes on one data directory never both run one due time", async () => {
    data = tempDir("outpost-sched-pair-");
    const dir = data.dir;
    const [first, second] = await Promise.all([spawn(dir), spawn(dir)]);
    const client = await connect(`ws://127.0.0.1:${first!.port}/agents/ticker/pair`);
    await client.rpc("setup", [50]);
    // The second process starts the same instance too: both now hold its schedules.
    const answer = await fetch(`http://127.0.0.1:${second!.port}/agents/ticker/pair`);
    expect(await answer.json()).toEqual({ pid: second!.child.pid });
    await waitFor(() => readRuns(dir, "pair").length >= 12, "twelve runs", 30_000);
    await client.close();
    await Promise.all([kill9(first!), kill9(second!)]);
    const rows = readRuns(dir, "pair");
    expect(repeatedDueTimes(rows)).toEqual([]);
    // One run per due second per schedule, whichever process won it.
    const cronDues = rows.filter((r) => r.kind === "cron").map((r) => r.due!);
    expect(new Set(cronDues).size).toBe(cronDues.length);
  }, 90_000);

  it("a queue item in progress when the process is killed with kill -9 runs again after restart, then the rest in order", async () => {
    data = tempDir("outpost-queue-crash-");
    const dir = data.dir;
    const first = await spawn(dir);
    const client = await connect(`ws://127.0.0.1:${first.port}/agents/ticker/jobs`);
    await client.rpc("jobs", [3, 1500]);
    await waitFor(
      () => readRuns(dir, "jobs").some((r) => r.label === "1" && r.phase === "start"),
      "job 1 to start",
      20_000,
    );
    await kill9(first);
    expect(readRuns(dir, "jobs").map((r) => `${r.label}:${r.phase}`)).toEqual(["1:start"]);

    const second = await spawn(dir); // no client: the wakeup index starts it
    await waitFor(
      () => readRuns(dir, "jobs").some((r) => r.label === "3" && r.phase === "end"),
      "job 3 to finish",
      30_000,
    );
    const rows = readRuns(dir, "jobs");
    expect(rows.map((r) => `${r.label}:${r.phase}`)).toEqual([
      "1:start",
      "1:start",
      "1:end",
      "2:start",
      "2:end",
      "3:start",
      "3:end",
    ]);
    expect(rows[0]!.pid).toBe(first.child.pid);
    expect(rows.slice(1).every((r) => r.pid === second.child.pid)).toBe(true);
    await waitFor(() => queueSize(dir, "jobs") === 0, "the queue to be empty");
  }, 90_000);
});

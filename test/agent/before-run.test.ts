import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { TaskQueue } from "../../src/agent/queue.js";
import { BEFORE_RUN_RETRY_MS, type BeforeRun, Schedules } from "../../src/agent/schedules.js";
import { AgentDatabase } from "../../src/storage/agent-database.js";
import { bareHost } from "../helpers/background-host.js";
import { captureLogs } from "../helpers/log-capture.js";
import { tempDir } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";

// The hook cluster mode uses to make a claim durable before a callback runs, exercised in
// single-node mode on a real database file.

interface Harness {
  db: AgentDatabase;
  runs: Array<{ payload: unknown; at: number }>;
  schedules: Schedules;
  queue: TaskQueue;
  lines: Array<Record<string, unknown>>;
}

const cleanups: Array<() => void> = [];

afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

function harness(beforeRun: BeforeRun): Harness {
  const dir = tempDir();
  const db = new AgentDatabase(join(dir.dir, "instance.sqlite"));
  const runs: Harness["runs"] = [];
  const agent = {
    tick(payload: unknown) {
      runs.push({ payload, at: Date.now() });
    },
  };
  const { logger, lines } = captureLogs();
  const host = bareHost(agent, logger);
  const tables = { read: () => db.schedules, write: () => db.schedules };
  const schedules = new Schedules(host, tables, beforeRun);
  const queue = new TaskQueue(host, { read: () => db.queue, write: () => db.queue }, beforeRun);
  cleanups.push(() => {
    schedules.close();
    queue.close();
    db.close();
    dir.remove();
  });
  return { db, runs, schedules, queue, lines };
}

/** A promise the test settles by hand. */
function deferred(): { promise: Promise<void>; resolve(): void; reject(error: Error): void } {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe("beforeRun hook", () => {
  it("is awaited before a recurring schedule's callback, after its next due time is written", async () => {
    const gate = deferred();
    const seen: Array<{ time: number; runs: number }> = [];
    let h!: Harness;
    h = harness(async () => {
      const [row] = h.db.schedules.all();
      seen.push({ time: row!.time, runs: h.runs.length });
      await gate.promise;
    });
    h.schedules.start();
    const made = h.schedules.every(1, "tick", { n: 1 });
    const due = h.db.schedules.get(made.id)!.time;
    await waitFor(() => seen.length === 1, "the hook to be called", 10_000);
    // The write the hook is there to make durable has happened; the callback has not run.
    expect(seen[0]!.time).toBeGreaterThan(due);
    expect(seen[0]!.runs).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(h.runs).toHaveLength(0);
    gate.resolve();
    await waitFor(() => h.runs.length === 1, "the callback after the hook resolved", 10_000);
    expect(h.runs[0]!.payload).toEqual({ n: 1 });
  });

  it("a rejection stops a one-shot schedule's run without losing it: it runs once the hook succeeds", async () => {
    let failures = 1;
    const calls: number[] = [];
    let h!: Harness;
    h = harness(async () => {
      calls.push(Date.now());
      if (failures-- > 0) throw new Error("not durable");
    });
    h.schedules.start();
    const made = h.schedules.create(0, "tick", { once: true });
    await waitFor(() => calls.length === 1, "the first hook call", 10_000);
    // Refused: not run, still stored and unclaimed, so a later owner could run it too.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(h.runs).toHaveLength(0);
    expect(h.db.schedules.get(made.id)).toMatchObject({ claimedBy: null });
    expect(h.lines.some((line) => line.event === "schedule_before_run_failed")).toBe(true);
    await waitFor(() => h.runs.length === 1, "the retried run", 10_000);
    expect(calls).toHaveLength(2);
    // Retried after the hold, not in a tight loop.
    expect(calls[1]! - calls[0]!).toBeGreaterThanOrEqual(BEFORE_RUN_RETRY_MS - 50);
    await waitFor(() => h.db.schedules.get(made.id) === undefined, "the one-shot row to go");
    expect(h.runs).toHaveLength(1);
  });

  it("a rejection stops a recurring schedule's run and puts its due time back", async () => {
    let fail = true;
    const seen: number[] = [];
    let h!: Harness;
    h = harness(async () => {
      seen.push(Date.now());
      if (fail) throw new Error("not durable");
    });
    h.schedules.start();
    const made = h.schedules.every(1, "tick", null);
    const due = h.db.schedules.get(made.id)!.time;
    await waitFor(() => seen.length >= 1, "the hook call", 10_000);
    await waitFor(
      () => h.db.schedules.get(made.id)?.time === due,
      "the due time to be put back",
      5_000,
    );
    expect(h.runs).toHaveLength(0);
    fail = false;
    await waitFor(() => h.runs.length === 1, "the run once the hook succeeds", 10_000);
    // That one due time ran once; the row moved on past it.
    expect(h.db.schedules.get(made.id)!.time).toBeGreaterThan(due);
  });

  it("is awaited before a queue item's callback; a rejection keeps the item at the head until it succeeds", async () => {
    let fail = true;
    const seen: Array<{ claimedBy: string | null; runs: number }> = [];
    let h!: Harness;
    h = harness(async () => {
      seen.push({ claimedBy: h.db.queue.head()?.claimedBy ?? null, runs: h.runs.length });
      if (fail) throw new Error("not durable");
    });
    h.queue.start();
    const first = h.queue.push("tick", { n: 1 });
    h.queue.push("tick", { n: 2 });
    await waitFor(() => seen.length === 1, "the hook call", 10_000);
    // Claimed when the hook runs, so the hook makes the claim durable.
    expect(seen[0]!.claimedBy).not.toBeNull();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(h.runs).toHaveLength(0);
    expect(h.db.queue.head()).toMatchObject({ id: first, claimedBy: null });
    expect(h.lines.some((line) => line.event === "queue_before_run_failed")).toBe(true);
    fail = false;
    await waitFor(() => h.runs.length === 2, "both items once the hook succeeds", 10_000);
    expect(h.runs.map((run) => run.payload)).toEqual([{ n: 1 }, { n: 2 }]);
    expect(h.db.queue.head()).toBeUndefined();
  });
});

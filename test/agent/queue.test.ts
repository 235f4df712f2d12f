import { describe, expect, it } from "vitest";
import { errors, openGate, Planner, type Run, runs } from "../fixtures/scheduling-agents.js";
import { captureLogs } from "../helpers/log-capture.js";
import { serverHarness } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";

const { start, open, tempDir } = serverHarness({ Planner }, "planner");

const queued = (name: string): Run[] => (runs.get(name) ?? []).filter((r) => r.kind === "queue");

describe("queue", () => {
  it("runs items in the order they were queued, one at a time", async () => {
    const server = await start();
    const client = await open(server, "order");
    const ids: string[] = [];
    for (const label of ["a", "b", "c", "d", "e"]) {
      ids.push(await client.rpc<string>("enqueue", ["work", { label, ms: 60 }]));
    }
    await waitFor(() => queued("order").filter((r) => r.end).length === 5, "five items", 10_000);
    const done = queued("order");
    expect(done.map((r) => r.label)).toEqual(["a", "b", "c", "d", "e"]);
    expect(done.map((r) => r.id)).toEqual(ids);
    // Each item starts only after the one before it has finished.
    for (let i = 1; i < done.length; i++) {
      expect(done[i]!.at).toBeGreaterThanOrEqual(done[i - 1]!.end!);
    }
    expect(await client.rpc("item", [ids[0]])).toBeNull();
  });

  it("lists, finds and dequeues waiting items; a dequeued item never runs", async () => {
    const server = await start();
    const client = await open(server, "manage");
    // The head waits at a gate, so everything behind it stays queued.
    await client.rpc("enqueue", ["work", { label: "head", gate: true }]);
    await waitFor(() => queued("manage").length === 1, "the head to start");
    const x1 = await client.rpc<string>("enqueue", ["work", { label: "x", user: "u1" }]);
    const x2 = await client.rpc<string>("enqueue", ["work", { label: "y", user: "u2" }]);
    const x3 = await client.rpc<string>("enqueue", ["work", { label: "z", user: "u1" }]);
    const f1 = await client.rpc<string>("enqueue", ["flaky", { label: "f", failures: 0 }]);
    const stable = await client.rpc<string>("enqueue", [
      "work",
      { label: "first" },
      { id: "stable", retry: { maxAttempts: 2 } },
    ]);
    expect(stable).toBe("stable");
    // Queueing with an id already waiting replaces that item where it stands.
    await client.rpc("enqueue", ["work", { label: "replaced" }, { id: "stable" }]);

    expect(await client.rpc("item", [x1])).toMatchObject({
      id: x1,
      callback: "work",
      payload: { label: "x", user: "u1" },
      createdAt: expect.any(Number),
    });
    const mine = await client.rpc<Array<{ id: string }>>("items", ["user", "u1"]);
    expect(mine.map((i) => i.id)).toEqual([x1, x3]);
    expect(await client.rpc("remove", [x3])).toBe(true);
    expect(await client.rpc("remove", [x3])).toBe(false);
    expect(await client.rpc("removeByCallback", ["flaky"])).toBe(1);
    expect(await client.rpc("item", [f1])).toBeNull();

    expect(openGate("head")).toBe(true);
    await waitFor(() => queued("manage").length === 4, "the rest of the queue");
    await waitFor(() => queued("manage").every((r) => r.end), "the last item to finish");
    expect(queued("manage").map((r) => r.label)).toEqual(["head", "x", "y", "replaced"]);
    expect(runs.get("manage")?.some((r) => r.kind === "flaky")).toBe(false);

    await client.rpc("enqueue", ["work", { label: "gate2", gate: true }]);
    await waitFor(() => queued("manage").length === 5, "the second gate");
    await client.rpc("enqueue", ["work", { label: "never1" }]);
    await client.rpc("enqueue", ["work", { label: "never2" }]);
    // The running item is still in the queue until it finishes.
    expect(await client.rpc("removeAll")).toBe(3);
    openGate("gate2");
    await client.rpc("enqueue", ["work", { label: "after" }]);
    await waitFor(() => queued("manage").some((r) => r.label === "after" && r.end), "a later item");
    expect(queued("manage").map((r) => r.label)).not.toContain("never1");
    expect(x2).toEqual(expect.any(String));
  });

  it("retries a failing item as configured, logs it once, drops it and goes on with the next", async () => {
    const { logger, lines } = captureLogs();
    const server = await start({ logger });
    const client = await open(server, "q-retry");
    const bad = await client.rpc<string>("enqueue", [
      "flaky",
      { label: "bad", failures: 99 },
      { retry: { maxAttempts: 4, baseDelayMs: 5, maxDelayMs: 20 } },
    ]);
    await client.rpc("enqueue", ["flaky", { label: "good", failures: 1 }]);
    await client.rpc("enqueue", ["work", { label: "next" }]);
    await waitFor(() => queued("q-retry").some((r) => r.end), "the item after them", 10_000);
    const flaky = (runs.get("q-retry") ?? []).filter((r) => r.kind === "flaky");
    expect(flaky.map((r) => `${r.label}${r.attempt}`)).toEqual([
      "bad1",
      "bad2",
      "bad3",
      "bad4",
      "good1",
      "good2",
    ]);
    expect(errors.get("q-retry")).toEqual([expect.stringMatching(/^boom bad 4/)]);
    const failed = lines.filter((l) => l.event === "queue_failed");
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ id: bad, callback: "flaky", attempts: 4, level: 50 });
    expect(JSON.stringify(client.received)).not.toMatch(/boom|secretFrame/);
    expect(await client.rpc("item", [bad])).toBeNull();
  });

  it("keeps waiting items across a graceful restart and runs them after it, without a client", async () => {
    const data = tempDir("outpost-queue-");
    const first = await start({ dataDir: data.dir, shutdownTimeout: 200 });
    const client = await open(first, "persisted");
    await client.rpc("enqueue", ["work", { label: "blocker", gate: true }]);
    await waitFor(() => queued("persisted").length === 1, "the blocker to start");
    await client.rpc("enqueue", ["work", { label: "later-1" }]);
    await client.rpc("enqueue", ["work", { label: "later-2" }]);
    await client.close();
    await first.close();
    // The blocker was still running at shutdown: it is run again, then the rest, in order.
    openGate("blocker");
    const second = await start({ dataDir: data.dir });
    await waitFor(() => queued("persisted").length === 2, "the blocker to run again", 10_000);
    openGate("blocker");
    await waitFor(
      () => queued("persisted").length === 4 && queued("persisted")[3]!.end !== undefined,
      "the rest of the queue",
      10_000,
    );
    expect(queued("persisted").map((r) => r.label)).toEqual([
      "blocker",
      "blocker",
      "later-1",
      "later-2",
    ]);
    expect(second.stats().connections).toBe(0);
  });
});

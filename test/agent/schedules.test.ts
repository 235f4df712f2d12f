import { afterEach, describe, expect, it, vi } from "vitest";
import {
  errors,
  Forgetful,
  Heartbeat,
  Planner,
  type Run,
  runs,
  starts,
  Tuned,
} from "../fixtures/scheduling-agents.js";
import { captureLogs } from "../helpers/log-capture.js";
import { serverHarness, tempDir } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";

const h = serverHarness({ Planner, Tuned, Heartbeat, Forgetful }, "planner");
const { start, open } = h;

afterEach(() => {
  vi.restoreAllMocks();
});

const runsOf = (name: string, kind?: string): Run[] =>
  (runs.get(name) ?? []).filter((r) => kind === undefined || r.kind === kind);

describe("cron schedules", () => {
  it("fires a seconds cron at each due second and re-arms after each run", async () => {
    const server = await start();
    const client = await open(server, "cron-fires");
    const made = await client.rpc<{ id: string; type: string; cron: string; time: number }>(
      "cron",
      ["* * * * * *", "every-second"],
    );
    expect(made).toMatchObject({ type: "cron", cron: "* * * * * *", callback: "tick" });
    expect(made.time * 1000).toBeGreaterThan(Date.now() - 1000);
    await waitFor(() => runsOf("cron-fires", "cron").length >= 3, "three cron runs", 10_000);
    const fired = runsOf("cron-fires", "cron").slice(0, 3);
    for (const run of fired) {
      // Never early: each run starts at or after the second it was due.
      expect(run.at).toBeGreaterThanOrEqual(run.due! * 1000);
      expect(run.id).toBe(made.id);
    }
    // One run per due second, each a later second than the last: re-armed after every run
    // (a stalled event loop may skip a second, never repeat one).
    const steps = fired.slice(1).map((r, i) => r.due! - fired[i]!.due!);
    expect(steps.every((step) => Number.isInteger(step) && step >= 1)).toBe(true);
    const pending = await client.rpc<{ id: string; time: number } | null>("byId", [made.id]);
    expect(pending?.time).toBeGreaterThan(fired[2]!.due!);
  });

  it("a five-field cron is due at the next whole minute, in UTC by default or in the given time zone", async () => {
    const server = await start();
    const client = await open(server, "cron-minute");
    const hourly = await client.rpc<{ time: number }>("cron", ["0 * * * *", "hourly"]);
    expect(hourly.time % 3600).toBe(0);
    expect(hourly.time * 1000).toBeGreaterThan(Date.now());
    expect(hourly.time * 1000 - Date.now()).toBeLessThanOrEqual(3600_000);
    // 09:00 in Kolkata (UTC+05:30, no daylight saving) is 03:30 UTC.
    const kolkata = await client.rpc<{ time: number; timezone: string }>("cron", [
      "0 9 * * *",
      "morning",
      { timezone: "Asia/Kolkata" },
    ]);
    expect(kolkata.timezone).toBe("Asia/Kolkata");
    expect(new Date(kolkata.time * 1000).toISOString()).toMatch(/T03:30:00\.000Z$/);
    const bad = await client.call("cron", ["61 * * * *", "bad"]);
    expect(bad).toMatchObject({ success: false });
    expect(String(bad.error)).toMatch(/invalid cron expression/);
    const zone = await client.call("cron", ["0 * * * *", "bad", { timezone: "Mars/Olympus" }]);
    expect(String(zone.error)).toMatch(/unknown time zone/);
  });

  it("cron and interval schedules are idempotent by default; one-shots only when asked", async () => {
    const server = await start();
    const client = await open(server, "idempotent");
    const a = await client.rpc<{ id: string }>("cron", ["0 8 * * *", "digest"]);
    const b = await client.rpc<{ id: string }>("cron", ["0 8 * * *", "digest"]);
    expect(b.id).toBe(a.id);
    const c = await client.rpc<{ id: string }>("cron", [
      "0 8 * * *",
      "digest",
      { idempotent: false },
    ]);
    expect(c.id).not.toBe(a.id);
    // Another payload or expression is another schedule.
    expect((await client.rpc<{ id: string }>("cron", ["0 8 * * *", "other"])).id).not.toBe(a.id);
    expect((await client.rpc<{ id: string }>("cron", ["0 9 * * *", "digest"])).id).not.toBe(a.id);

    const e1 = await client.rpc<{ id: string; type: string; intervalSeconds: number }>("every", [
      30,
      "poll",
    ]);
    expect(e1).toMatchObject({ type: "interval", intervalSeconds: 30 });
    expect((await client.rpc<{ id: string }>("every", [30, "poll"])).id).toBe(e1.id);
    expect((await client.rpc<{ id: string }>("every", [60, "poll"])).id).not.toBe(e1.id);

    const d1 = await client.rpc<{ id: string }>("after", [600, "once"]);
    expect((await client.rpc<{ id: string }>("after", [600, "once"])).id).not.toBe(d1.id);
    const d3 = await client.rpc<{ id: string }>("after", [900, "once", { idempotent: true }]);
    expect(d3.id).toBe(d1.id);
    expect(await client.rpc<unknown[]>("listSync")).toHaveLength(8);
  });
});

describe("schedules made in onStart", () => {
  it("scheduleEvery and a cron string in onStart make one schedule each, however often the instance starts", async () => {
    const data = tempDir("outpost-onstart-");
    try {
      for (let run = 1; run <= 3; run++) {
        const server = await start({ dataDir: data.dir });
        const client = await open(server, "beat", "heartbeat");
        const list = await client.rpc<Array<{ type: string; payload: unknown }>>("listSync");
        expect(list.map((s) => s.type).sort()).toEqual(["cron", "interval"]);
        await client.close();
        h.clients.splice(h.clients.indexOf(client), 1);
        await server.close();
        h.servers.splice(h.servers.indexOf(server), 1);
      }
      expect(starts.get("beat")).toBe(3);
    } finally {
      data.remove();
    }
  });

  it("warns once per start about a one-shot schedule made in onStart without idempotent, as the SDK does", async () => {
    const { logger, lines } = captureLogs();
    const server = await start({ logger });
    const client = await open(server, "forgetful", "forgetful");
    const list = await client.rpc<Array<{ payload: { label: string } }>>("listSync");
    // Not deduplicated (the SDK's default for one-shots), but the user was told.
    expect(list.map((s) => s.payload.label)).toEqual(["again", "again", "once"]);
    const warnings = lines.filter((l) => l.event === "schedule_in_onstart");
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 40, callback: "tick", instance: "forgetful" });
    // Outside onStart the same call is ordinary.
    await client.rpc("after", [60, "later"]);
    expect(lines.filter((l) => l.event === "schedule_in_onstart")).toHaveLength(1);
  });
});

describe("interval schedules", () => {
  it("runs every interval, the first one interval after it was made", async () => {
    const server = await start();
    const client = await open(server, "interval");
    const made = Date.now();
    const schedule = await client.rpc<{ id: string }>("every", [0.3, "beat"]);
    await waitFor(() => runsOf("interval", "interval").length >= 3, "three interval runs", 10_000);
    const beats = runsOf("interval", "interval");
    expect(beats[0]!.at - made).toBeGreaterThanOrEqual(290);
    for (let i = 1; i < 3; i++) expect(beats[i]!.at - beats[i - 1]!.at).toBeGreaterThanOrEqual(290);
    expect(beats.every((b) => b.id === schedule.id)).toBe(true);
    expect(await client.rpc("cancel", [schedule.id])).toBe(true);
    const count = runsOf("interval", "interval").length;
    await client.rpc("after", [0.5, "marker"]);
    await waitFor(() => runsOf("interval", "delayed").length === 1, "a later schedule to run");
    // Cancelled: no beat after the marker that ran 0.5 s later (at most one in flight then).
    expect(runsOf("interval", "interval").length).toBeLessThanOrEqual(count + 1);
  });
});

describe("getScheduleById and listSchedules", () => {
  it("filters by id, type and time range with the SDK's criteria", async () => {
    const server = await start();
    const client = await open(server, "criteria");
    const now = Date.now();
    const soon = await client.rpc<{ id: string; type: string; delayInSeconds: number }>("after", [
      100,
      "soon",
    ]);
    expect(soon).toMatchObject({ type: "delayed", delayInSeconds: 100 });
    const dated = await client.rpc<{ id: string; type: string }>("at", [now + 3600_000, "dated"]);
    expect(dated.type).toBe("scheduled");
    const cron = await client.rpc<{ id: string }>("cron", ["0 0 1 1 *", "yearly"]);
    const every = await client.rpc<{ id: string }>("every", [7200, "slow"]);

    const ids = (list: Array<{ id: string }>) => list.map((s) => s.id);
    expect(ids(await client.rpc("list"))).toEqual([soon.id, dated.id, every.id, cron.id]);
    expect(ids(await client.rpc("list", [{ type: "cron" }]))).toEqual([cron.id]);
    expect(ids(await client.rpc("list", [{ type: "interval" }]))).toEqual([every.id]);
    expect(ids(await client.rpc("list", [{ id: dated.id }]))).toEqual([dated.id]);
    expect(ids(await client.rpc("list", [{ start: now + 50_000, end: now + 4000_000 }]))).toEqual([
      soon.id,
      dated.id,
    ]);
    expect(ids(await client.rpc("list", [{ start: now + 3000_000 }]))).toEqual([
      dated.id,
      every.id,
      cron.id,
    ]);
    expect(await client.rpc("byId", [every.id])).toMatchObject({
      id: every.id,
      type: "interval",
      intervalSeconds: 7200,
      payload: { label: "slow" },
    });
    expect(await client.rpc("byId", ["nope"])).toBeNull();
  });
});

describe("schedule retries", () => {
  it("retries a throwing callback with exponential backoff as configured, then logs one line and calls onError", async () => {
    // The largest jitter every time, so the backoff itself is visible: 2×base, then the cap.
    vi.spyOn(Math, "random").mockReturnValue(0.999);
    const { logger, lines } = captureLogs();
    const server = await start({ logger });
    const client = await open(server, "retried");
    const made = await client.rpc<{ id: string; retry: unknown }>("failing", [
      "always",
      99,
      { maxAttempts: 3, baseDelayMs: 150, maxDelayMs: 400 },
    ]);
    expect(made.retry).toEqual({ maxAttempts: 3, baseDelayMs: 150, maxDelayMs: 400 });
    await waitFor(() => (errors.get("retried") ?? []).length === 1, "onError", 10_000);
    const attempts = runsOf("retried", "flaky");
    expect(attempts.map((a) => a.attempt)).toEqual([1, 2, 3]);
    expect(attempts[1]!.at - attempts[0]!.at).toBeGreaterThanOrEqual(290); // ~299 ms
    expect(attempts[2]!.at - attempts[1]!.at).toBeGreaterThanOrEqual(390); // capped at 400
    const failed = lines.filter((l) => l.event === "schedule_failed");
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({
      level: 50,
      id: made.id,
      callback: "flaky",
      attempts: 3,
      agent: "planner",
      instance: "retried",
    });
    expect(lines.filter((l) => l.event === "schedule_retry")).toHaveLength(2);
    // Gone after the last attempt, and nothing about it (no stack) ever reached the client.
    expect(await client.rpc("listSync")).toEqual([]);
    expect(JSON.stringify(client.received)).not.toMatch(/boom|secretFrame/);
  });

  it("stops retrying once the callback succeeds, and uses static options.retry as the default", async () => {
    const { logger, lines } = captureLogs();
    const server = await start({ logger });
    const client = await open(server, "recovers");
    await client.rpc("failing", ["twice", 2, { maxAttempts: 5, baseDelayMs: 10, maxDelayMs: 20 }]);
    await waitFor(() => runsOf("recovers", "flaky").length === 3, "the third attempt");
    const tuned = await open(server, "tuned", "tuned");
    await tuned.rpc("failing", ["tuned", 99]);
    await waitFor(() => (errors.get("tuned") ?? []).length === 1, "onError of the tuned agent");
    // Tuned's static options.retry allows two attempts, not the SDK's default three.
    expect(runsOf("tuned", "flaky")).toHaveLength(2);
    expect(runsOf("recovers", "flaky")).toHaveLength(3);
    expect(errors.get("recovers")).toBeUndefined();
    expect(lines.filter((l) => l.event === "schedule_failed" && l.instance === "recovers")).toEqual(
      [],
    );
    const bad = await client.call("failing", ["bad", 0, { maxAttempts: 0 }]);
    expect(String(bad.error)).toMatch(/maxAttempts/);
  });
});

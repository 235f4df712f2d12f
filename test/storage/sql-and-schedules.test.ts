import { existsSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import type { CounterState } from "../fixtures/agents.js";
import { Counter } from "../fixtures/agents.js";
import { serverHarness } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";

const { start, open, tempDir } = serverHarness({ Counter }, "counter");

/** The state stored in an instance's database file, read without the server. */
function storedState(dataDir: string, name: string): CounterState | undefined {
  const file = join(dataDir, "counter", `${name}.sqlite`);
  if (!existsSync(file)) return undefined;
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const row = db.prepare("SELECT value FROM _outpost_kv WHERE key = 'state'").get() as
      | { value: string }
      | undefined;
    return row === undefined ? undefined : (JSON.parse(row.value) as CounterState);
  } finally {
    db.close();
  }
}

const labelled = (label: string) => (m: unknown) =>
  JSON.stringify(m).includes(`"label":"${label}"`);

describe("this.sql", () => {
  it("binds interpolated values as parameters: an injection attempt is stored as text", async () => {
    const server = await start();
    const client = await open(server, "notes");
    const attack = "x'); DROP TABLE notes; --";
    expect(await client.rpc("addNote", [attack])).toEqual([attack]);
    expect(await client.rpc("addNote", ["Robert'); DELETE FROM notes;--"])).toEqual([
      attack,
      "Robert'); DELETE FROM notes;--",
    ]);
    expect(await client.rpc("addNote", ["third"])).toHaveLength(3);
    const db = new Database(join(server.dataDir, "counter", "notes.sqlite"), { readonly: true });
    expect(db.prepare("SELECT text FROM notes ORDER BY id").pluck().all()).toEqual([
      attack,
      "Robert'); DELETE FROM notes;--",
      "third",
    ]);
    db.close();
  });

  it("keeps each instance's tables in its own database", async () => {
    const server = await start();
    const a = await open(server, "tables-a");
    const b = await open(server, "tables-b");
    expect(await a.rpc("addNote", ["only in a"])).toEqual(["only in a"]);
    expect(await b.rpc("addNote", ["only in b"])).toEqual(["only in b"]);
  });
});

describe("schedules", () => {
  it("runs a schedule when it is due, then forgets it", async () => {
    const server = await start();
    const client = await open(server, "due");
    const scheduled = Date.now();
    await client.rpc("scheduleIn", [0.1, "ran"]);
    await client.waitFor(labelled("ran"), "the schedule to run");
    expect(Date.now() - scheduled).toBeGreaterThanOrEqual(90);
    expect(await client.rpc("pendingSchedules")).toEqual([]);
  });

  it("lists pending schedules and cancels them; a cancelled schedule never runs", async () => {
    const server = await start();
    const client = await open(server, "cancel");
    const later = await client.rpc<string>("scheduleIn", [60, "later"]);
    const list = await client.rpc<Array<Record<string, unknown>>>("pendingSchedules");
    expect(list).toEqual([
      {
        id: later,
        callback: "applyLabel",
        payload: { label: "later" },
        time: expect.any(Number),
        // Made with a number of seconds, so it is "delayed" (a Date makes it "scheduled").
        type: "delayed",
        delayInSeconds: 60,
      },
    ]);
    expect(list[0]!.time as number).toBeGreaterThan(Date.now() / 1000 + 50);
    const dated = await client.rpc<string>("scheduleAt", [Date.now() + 120_000, "dated"]);
    const both = await client.rpc<Array<Record<string, unknown>>>("pendingSchedules");
    expect(both.map((s) => [s.id, s.type])).toEqual([
      [later, "delayed"],
      [dated, "scheduled"],
    ]);
    expect(await client.rpc("cancel", [dated])).toBe(true);
    expect(await client.rpc("cancel", [later])).toBe(true);
    expect(await client.rpc("cancel", [later])).toBe(false);
    expect(await client.rpc("pendingSchedules")).toEqual([]);

    const doomed = await client.rpc<string>("scheduleIn", [0.1, "cancelled"]);
    await client.rpc("scheduleIn", [0.2, "kept"]);
    expect(await client.rpc("cancel", [doomed])).toBe(true);
    await client.waitFor(labelled("kept"), "the kept schedule to run");
    expect(client.received.some(labelled("cancelled"))).toBe(false);
  });

  it("runs a schedule after a restart, without any client connecting", async () => {
    const data = tempDir("outpost-sched-");
    const first = await start({ dataDir: data.dir });
    const client = await open(first, "restart");
    await client.rpc("scheduleIn", [1, "after-restart"]);
    await client.close();
    await first.close();
    expect(storedState(data.dir, "restart")).toBeUndefined();

    const second = await start({ dataDir: data.dir });
    await waitFor(
      () => storedState(data.dir, "restart")?.label === "after-restart",
      "the schedule to run on the restarted server",
    );
    expect(second.stats().connections).toBe(0);
    const again = await open(second, "restart");
    expect(again.frames("cf_agent_state")[0]).toMatchObject({ state: { label: "after-restart" } });
    expect(await again.rpc("pendingSchedules")).toEqual([]);
  });

  it("wakes an evicted instance when its schedule is due", async () => {
    const server = await start({ idleTimeout: 50 });
    const client = await open(server, "wake");
    await client.rpc("scheduleIn", [0.4, "woken"]);
    await client.close();
    await waitFor(() => server.stats().instances === 0, "the instance to be evicted");
    await waitFor(
      () => storedState(server.dataDir, "wake")?.label === "woken",
      "the evicted instance to be woken",
    );
  });
});

/**
 * A cluster node that runs agent schedules, in a process of its own, for tests that kill or
 * pause it. Usage: `node --import tsx wake-node-child.ts '<json options>'` (membership
 * options plus `dataDir`, `scanMs` and `hangMs`). Reads one JSON command per line on stdin
 * and prints one JSON line per reply and per event on stdout (see node-process.ts).
 *
 * An instance here is the real `Schedules` on a local SQLite file, with a stand-in for the
 * change shipper: its schedule rows are copied into the test's `sched_copy` table, fenced
 * by the epoch, after each command and in `beforeRun`, and restored from there when the
 * instance is activated. The agent's one callback, `tick`, records each run in the test's
 * `runs` table, then waits `hangMs` (so a test can kill the node during a run).
 *
 * Commands: `own`, `every`, `delay`, `release`, `setWakeup` (through `WakeupWriter`),
 * `rawSetWakeup` (`writeWakeup` through `fencedWrite` with an epoch given by the test, so
 * only Postgres's check stands in its way), `stats`, `exit`.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { pino } from "pino";
import { type Schedule, Schedules } from "../../src/agent/schedules.js";
import { fencedWrite } from "../../src/cluster/fencing.js";
import type { MembershipOptions } from "../../src/cluster/membership.js";
import { Waker } from "../../src/cluster/waker.js";
import { WakeupWriter, writeWakeup } from "../../src/cluster/wakeups.js";
import { AgentDatabase } from "../../src/storage/agent-database.js";
import type { StoredSchedule } from "../../src/storage/schedule-table.js";
import { bareHost } from "../helpers/background-host.js";
import { startChildNode } from "./node-process.js";

type Options = MembershipOptions & { dataDir: string; scanMs: number; hangMs: number };
const node = await startChildNode<Options>();
const { options, membership, ownership, sql, print } = node;
const { schema } = options;
const writer = new WakeupWriter(ownership, schema);
const logger = pino({ level: "silent" });
ownership.on("lost", (lost) => {
  // As the server does: an instance this node no longer owns stops at once.
  instances.get(lost.instance)?.close();
  instances.delete(lost.instance);
});

interface Runtime {
  schedules: Schedules;
  /** Copy this instance's schedule rows to Postgres, fenced (the shipper's stand-in). */
  flush(): Promise<void>;
  close(): void;
}

const instances = new Map<string, Runtime>();
const activating = new Map<string, Promise<Runtime>>();
let woken = 0;

async function activate(instance: string): Promise<Runtime> {
  const claim = await ownership.claim(instance);
  if (!claim.owned) throw new Error(`${instance} is owned by ${claim.owner.nodeId}`);
  const path = join(options.dataDir, options.nodeId, `${encodeURIComponent(instance)}.sqlite`);
  for (const file of [path, `${path}-wal`, `${path}-shm`]) rmSync(file, { force: true });
  const db = new AgentDatabase(path);
  const copy = await sql<{ row: StoredSchedule }[]>`
    SELECT row FROM ${sql(schema)}.sched_copy WHERE instance = ${instance}`;
  for (const { row } of copy) {
    db.schedules.insert(row);
    if (row.claimedBy !== null) db.schedules.claim(row.id, row.claimedBy, null);
  }
  const flush = () =>
    ownership.write(instance, async (tx) => {
      await tx`DELETE FROM ${tx(schema)}.sched_copy WHERE instance = ${instance}`;
      for (const row of db.schedules.all()) {
        await tx`
          INSERT INTO ${tx(schema)}.sched_copy (instance, id, row)
          VALUES (${instance}, ${row.id}, ${tx.json(row as never)})`;
      }
    });
  const agent = {
    async tick(_payload: unknown, schedule: Schedule) {
      await sql`
        INSERT INTO ${sql(schema)}.runs (instance, schedule_id, due, node)
        VALUES (${instance}, ${schedule.id}, ${schedule.time}, ${options.nodeId})`;
      print({ event: "ran", instance, due: schedule.time });
      if (options.hangMs > 0) await new Promise((resolve) => setTimeout(resolve, options.hangMs));
    },
  };
  let schedules: Schedules | undefined;
  // What the server does in onNextWakeup: the index follows the instance's earliest item.
  const host = bareHost(agent, logger, () => {
    if (schedules === undefined) return;
    writer.set(instance, schedules.nextWakeup()).catch(() => {});
  });
  schedules = new Schedules(host, { read: () => db.schedules, write: () => db.schedules }, flush);
  const runtime: Runtime = {
    schedules,
    flush,
    close() {
      schedules.close();
      db.close();
    },
  };
  instances.set(instance, runtime);
  schedules.start();
  return runtime;
}

function runtimeOf(instance: string): Promise<Runtime> {
  const live = instances.get(instance);
  if (live !== undefined) return Promise.resolve(live);
  let pending = activating.get(instance);
  if (pending === undefined) {
    pending = activate(instance).finally(() => activating.delete(instance));
    activating.set(instance, pending);
  }
  return pending;
}

const waker = await Waker.start(options, membership, ownership, async (agent, name) => {
  const instance = `${agent}/${name}`;
  await runtimeOf(instance);
  woken++;
  print({ event: "woken", instance, at: Date.now() });
});
let scans = 0;
waker.on("scanned", () => scans++);
waker.on("wakeFailed", ({ instance, error }) =>
  print({ event: "wakeFailed", instance, message: (error as Error).message }),
);

interface Command {
  id: number;
  cmd: "own" | "every" | "delay" | "release" | "setWakeup" | "rawSetWakeup" | "stats" | "exit";
  instance: string;
  seconds?: number;
  due?: number;
  epoch?: number;
}

/** A command that changes schedules ends like a turn: its changes are durable, then the index. */
async function settle(instance: string, runtime: Runtime): Promise<void> {
  await runtime.flush();
  await writer.set(instance, runtime.schedules.nextWakeup());
}

async function run(command: Command): Promise<object> {
  const { instance } = command;
  switch (command.cmd) {
    case "own":
      await runtimeOf(instance);
      return { epoch: ownership.epochOf(instance) };
    case "every": {
      const runtime = await runtimeOf(instance);
      const made = runtime.schedules.every(command.seconds ?? 1, "tick", null);
      await settle(instance, runtime);
      return { id: made.id, time: made.time };
    }
    case "delay": {
      const runtime = await runtimeOf(instance);
      const made = runtime.schedules.create(command.seconds ?? 0, "tick", null);
      await settle(instance, runtime);
      return { id: made.id, time: made.time };
    }
    case "release":
      instances.get(instance)?.close();
      instances.delete(instance);
      await ownership.release(instance);
      await waker.released(instance);
      return {};
    case "setWakeup":
      await writer.set(instance, command.due);
      return {};
    case "rawSetWakeup":
      await fencedWrite(sql, schema, instance, command.epoch ?? 0, (tx) =>
        writeWakeup(tx, schema, instance, command.due),
      );
      return {};
    case "stats":
      return { scans, woken, held: [...ownership.held().keys()] };
    case "exit":
      for (const runtime of instances.values()) runtime.close();
      await waker.close();
      await ownership.close();
      await membership.close();
      await sql.end({ timeout: 1 });
      process.exit(0);
  }
}

node.serve(run);

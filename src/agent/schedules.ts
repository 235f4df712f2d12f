import { randomUUID } from "node:crypto";
import type { ScheduleTable, ScheduleType, StoredSchedule } from "../storage/schedule-table.js";
import {
  assertCallback,
  type BackgroundHost,
  type LazyTable,
  retryJson,
  runCallback,
} from "./background.js";
import { CLAIM_TOKEN, isStaleClaim } from "./claims.js";
import { nextCronTime, validateCron } from "./cron.js";
import { type RetryOptions, resolveRetry } from "./retry.js";

/** A persisted scheduled call, as the official SDK describes it. Times are epoch seconds. */
export type Schedule<Payload = unknown> = {
  id: string;
  /** Name of the agent method that runs. */
  callback: string;
  payload: Payload;
  /** The retry options given when it was made. */
  retry?: RetryOptions;
  /** When it runs next, in seconds since the epoch. */
  time: number;
} & (
  | { type: "scheduled" }
  | { type: "delayed"; delayInSeconds: number }
  | { type: "cron"; cron: string; timezone?: string }
  | { type: "interval"; intervalSeconds: number }
);

/** Options of `schedule()` and `scheduleEvery()`. */
export interface ScheduleOptions {
  /** Retry policy of the callback; unset fields come from `static options.retry`. */
  retry?: RetryOptions;
  /**
   * Return the existing schedule with the same callback, payload and timing instead of
   * adding another. Default: on for cron and interval schedules, off for one-shots.
   */
  idempotent?: boolean;
  /**
   * Outpost addition: the IANA time zone a cron expression is read in (default UTC, the
   * clock of a Cloudflare Worker).
   */
  timezone?: string;
}

/** Filters of `getSchedules()` / `listSchedules()`. */
export interface ScheduleCriteria {
  id?: string;
  type?: ScheduleType;
  timeRange?: { start?: Date; end?: Date };
}

/** While another live process holds a claim, look again this often (ms). */
const FOREIGN_CLAIM_POLL_MS = 1000;

/**
 * Awaited after a schedule or queue item is claimed (or a recurring schedule's next due
 * time written) and before its callback runs. Cluster mode makes that write durable here
 * (it flushes the instance's changes to PostgreSQL), so a node that takes the instance over
 * after this one died never runs the same due time again. Single-node mode has none.
 */
export type BeforeRun = () => Promise<void>;

/** After `beforeRun` rejected, try the item again this long later (ms). */
export const BEFORE_RUN_RETRY_MS = 1000;

/**
 * One instance's schedules: one-shot (a `Date` or a delay in seconds), cron and fixed
 * interval. They run one at a time, earliest first.
 *
 * A recurring schedule's next due time is written (compare-and-set on the due time it
 * replaces) before its callback starts, so a restart, or a second process on the same
 * data directory, can never run one due time twice; if the process dies during the run,
 * that occurrence is not repeated and the next one runs as planned. A one-shot schedule is
 * claimed before it runs and deleted after, so one whose process died during the run runs
 * again after a restart.
 */
export class Schedules {
  readonly #host: BackgroundHost;
  readonly #tables: LazyTable<ScheduleTable>;
  #timer: NodeJS.Timeout | undefined;
  #started = false;
  #closed = false;
  #running = false;
  #again = false;
  /** The one-shot schedule this process is running, so close() can give its claim back. */
  #claimed: string | undefined;
  /** Callbacks already warned about (see `#warnInOnStart`). */
  readonly #warned = new Set<string>();
  readonly #beforeRun: BeforeRun | undefined;
  /** Set while `beforeRun` keeps failing: nothing runs before this time (epoch ms). */
  #holdUntil = 0;

  /** `beforeRun` (default: none) is awaited before each callback; see `BeforeRun`. */
  constructor(host: BackgroundHost, tables: LazyTable<ScheduleTable>, beforeRun?: BeforeRun) {
    this.#host = host;
    this.#tables = tables;
    this.#beforeRun = beforeRun;
  }

  /** Every schedule, the earliest first; none while the database does not exist. */
  #rows(): StoredSchedule[] {
    return this.#tables.read()?.all() ?? [];
  }

  /** `onStart` finished: run what is due and arm the timer. */
  start(): void {
    this.#started = true;
    this.#arm();
  }

  create(
    when: Date | string | number,
    callback: string,
    payload: unknown,
    options: ScheduleOptions = {},
  ): Schedule {
    assertCallback(this.#host.agent, callback, "schedule");
    if (options.retry !== undefined) resolveRetry(options.retry, this.#host.retryDefaults);
    const now = Date.now();
    let row: Omit<StoredSchedule, "claimedBy">;
    const base = {
      id: randomUUID(),
      callback,
      payload: JSON.stringify(payload ?? null),
      retry: retryJson(options.retry),
      cron: null,
      timezone: null,
      intervalSeconds: null,
      delaySeconds: null,
    };
    if (options.timezone !== undefined && typeof when !== "string") {
      throw new TypeError("schedule(): `timezone` applies to cron expressions only");
    }
    if (when instanceof Date) {
      const time = when.getTime();
      if (!Number.isFinite(time)) throw new TypeError("schedule(): invalid date");
      row = { ...base, type: "scheduled", time };
    } else if (typeof when === "number") {
      if (!Number.isFinite(when) || when < 0) {
        throw new TypeError("schedule(): a delay must be a number of seconds >= 0");
      }
      row = { ...base, type: "delayed", time: now + when * 1000, delaySeconds: when };
    } else if (typeof when === "string") {
      validateCron(when, options.timezone);
      const time = nextCronTime(when, now, options.timezone)!;
      row = { ...base, type: "cron", time, cron: when, timezone: options.timezone ?? null };
    } else {
      throw new TypeError(
        "schedule(): `when` must be a Date, a number of seconds or a cron string",
      );
    }
    if (options.idempotent === undefined && row.type !== "cron") this.#warnInOnStart(callback);
    return this.#insert(row, options.idempotent ?? row.type === "cron");
  }

  /**
   * As the SDK does: a one-shot schedule made in `onStart` (which runs on every start)
   * without `idempotent` adds a row each time, which is rarely meant.
   */
  #warnInOnStart(callback: string): void {
    if (this.#started || this.#warned.has(callback)) return;
    this.#warned.add(callback);
    this.#host.log.warn(
      { event: "schedule_in_onstart", callback },
      `schedule("${callback}") in onStart() without { idempotent: true } adds a schedule on every start; pass { idempotent: true } or use scheduleEvery()`,
    );
  }

  every(
    intervalSeconds: number,
    callback: string,
    payload: unknown,
    options: ScheduleOptions & { _idempotent?: boolean } = {},
  ): Schedule {
    assertCallback(this.#host.agent, callback, "scheduleEvery");
    if (!Number.isFinite(intervalSeconds) || intervalSeconds <= 0) {
      throw new TypeError("scheduleEvery(): intervalSeconds must be a number > 0");
    }
    if (options.retry !== undefined) resolveRetry(options.retry, this.#host.retryDefaults);
    const row: Omit<StoredSchedule, "claimedBy"> = {
      id: randomUUID(),
      callback,
      payload: JSON.stringify(payload ?? null),
      retry: retryJson(options.retry),
      type: "interval",
      time: Date.now() + intervalSeconds * 1000,
      cron: null,
      timezone: null,
      intervalSeconds,
      delaySeconds: null,
    };
    return this.#insert(row, options.idempotent ?? options._idempotent ?? true);
  }

  #insert(row: Omit<StoredSchedule, "claimedBy">, idempotent: boolean): Schedule {
    if (idempotent) {
      const existing = this.#tables.read()?.findSame(row);
      if (existing !== undefined) return toSchedule(existing);
    }
    this.#tables.write().insert(row);
    this.#arm();
    return toSchedule({ ...row, claimedBy: null });
  }

  get(id: string): Schedule | undefined {
    const row = this.#tables.read()?.get(id);
    return row === undefined ? undefined : toSchedule(row);
  }

  list(criteria: ScheduleCriteria = {}): Schedule[] {
    const start = criteria.timeRange?.start?.getTime() ?? -Infinity;
    const end = criteria.timeRange?.end?.getTime() ?? Infinity;
    return this.#rows()
      .filter(
        (row) =>
          (criteria.id === undefined || row.id === criteria.id) &&
          (criteria.type === undefined || row.type === criteria.type) &&
          row.time >= start &&
          row.time <= end,
      )
      .map(toSchedule);
  }

  cancel(id: string): boolean {
    const removed = this.#tables.read()?.delete(id) ?? false;
    if (removed) this.#arm();
    return removed;
  }

  /** Remove every schedule (`destroy()`). */
  clear(): void {
    this.#tables.read()?.deleteAll();
  }

  /**
   * When this instance must next be awake for its schedules: the earliest row that this
   * process may run. A row held by another live process is looked at again shortly.
   */
  nextWakeup(): number | undefined {
    let earliest: number | undefined;
    for (const row of this.#rows()) {
      let time = row.time;
      if (row.claimedBy !== null && !isStaleClaim(row.claimedBy)) {
        // Ours is running now (the run re-arms when it ends); another process's is polled.
        if (row.claimedBy === CLAIM_TOKEN) continue;
        time = Math.max(time, Date.now() + FOREIGN_CLAIM_POLL_MS);
      }
      if (earliest === undefined || time < earliest) earliest = time;
    }
    return earliest === undefined ? undefined : Math.max(earliest, this.#holdUntil);
  }

  #arm(): void {
    // A schedule made inside onStart waits for onStart to finish, like everything else.
    if (this.#closed || !this.#started) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#host.changed();
    if (this.#running) return; // the running loop re-arms when it ends
    const next = this.nextWakeup();
    if (next === undefined) return;
    const delay = Math.min(Math.max(0, next - Date.now()), 2 ** 31 - 1);
    this.#timer = setTimeout(() => void this.runDue(), delay);
    this.#timer.unref();
  }

  /** Run every schedule whose time has come, one at a time, earliest first. */
  async runDue(): Promise<void> {
    if (this.#closed || !this.#started) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = true;
    try {
      await this.#host.track(async () => {
        do {
          this.#again = false;
          while (!this.#closed) {
            const row = this.#nextDue();
            if (row === undefined) break;
            await this.#runOne(row);
          }
        } while (this.#again && !this.#closed);
      });
    } finally {
      this.#running = false;
    }
    this.#arm();
  }

  /** The earliest due row this process may run now. */
  #nextDue(): StoredSchedule | undefined {
    const now = Date.now();
    if (now < this.#holdUntil) return undefined;
    for (const row of this.#rows()) {
      if (row.time > now) return undefined;
      if (row.claimedBy === null || isStaleClaim(row.claimedBy)) return row;
    }
    return undefined;
  }

  async #runOne(row: StoredSchedule): Promise<void> {
    // The row was read from it, so the database exists.
    const table = this.#tables.write();
    const recurring = row.type === "cron" || row.type === "interval";
    if (recurring) {
      const next = nextTime(row, Date.now());
      // Written before the callback runs: this due time can never run again.
      if (next === undefined) table.delete(row.id);
      else if (!table.advance(row.id, row.time, next)) return;
    } else {
      if (!table.claim(row.id, CLAIM_TOKEN, row.claimedBy)) return;
      this.#claimed = row.id;
    }
    if (!(await this.#runBefore(table, row, recurring))) return;
    const schedule = toSchedule(row);
    await runCallback(
      this.#host,
      "schedule",
      row,
      [schedule.payload, schedule],
      () => !this.#closed && table.get(row.id) !== undefined,
    );
    this.#claimed = undefined;
    if (this.#closed) return;
    if (!recurring) {
      table.delete(row.id);
      return;
    }
    // A run longer than the period skips the occurrences it overlapped, as in the SDK.
    const current = table.get(row.id);
    if (current !== undefined && current.time <= Date.now()) {
      const next = nextTime(current, Date.now());
      if (next === undefined) table.delete(row.id);
      else table.advance(row.id, current.time, next);
    }
  }

  /**
   * Await `beforeRun`. When it rejects, undo what the run wrote (the next due time, or the
   * claim) so the schedule is due again, hold every schedule for `BEFORE_RUN_RETRY_MS`,
   * and tell the caller not to run the callback.
   */
  async #runBefore(
    table: ScheduleTable,
    row: StoredSchedule,
    recurring: boolean,
  ): Promise<boolean> {
    if (this.#beforeRun === undefined) return true;
    try {
      await this.#beforeRun();
      return true;
    } catch (error) {
      if (recurring) {
        const current = table.get(row.id);
        if (current === undefined) table.insert(row);
        else table.advance(row.id, current.time, row.time);
      } else {
        table.release(row.id, CLAIM_TOKEN);
        this.#claimed = undefined;
      }
      this.#holdUntil = Date.now() + BEFORE_RUN_RETRY_MS;
      this.#host.log.warn(
        { event: "schedule_before_run_failed", id: row.id, callback: row.callback, err: error },
        `schedule not run: its claim could not be made durable; retrying in ${BEFORE_RUN_RETRY_MS} ms`,
      );
      return false;
    }
  }

  /** Stop the timer; give back a claim still held, so a later owner can run it. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#claimed !== undefined) this.#tables.read()?.release(this.#claimed, CLAIM_TOKEN);
  }
}

function nextTime(row: StoredSchedule, now: number): number | undefined {
  if (row.type === "interval") return now + (row.intervalSeconds ?? 0) * 1000;
  return nextCronTime(row.cron ?? "", now, row.timezone ?? undefined);
}

/** The SDK's shape of a stored row. */
function toSchedule(row: StoredSchedule): Schedule {
  const common = {
    id: row.id,
    callback: row.callback,
    payload: JSON.parse(row.payload) as unknown,
    time: Math.floor(row.time / 1000),
    ...(row.retry !== null && { retry: JSON.parse(row.retry) as RetryOptions }),
  };
  switch (row.type) {
    case "delayed":
      return { ...common, type: "delayed", delayInSeconds: row.delaySeconds ?? 0 };
    case "cron":
      return {
        ...common,
        type: "cron",
        cron: row.cron ?? "",
        ...(row.timezone !== null && { timezone: row.timezone }),
      };
    case "interval":
      return { ...common, type: "interval", intervalSeconds: row.intervalSeconds ?? 0 };
    default:
      return { ...common, type: "scheduled" };
  }
}

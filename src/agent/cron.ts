import { Cron } from "croner";

/**
 * Cron expressions through `croner`: five fields (minute first) as on Cloudflare, or six
 * with seconds first. Times are read in UTC unless a time zone is given, because a
 * Worker's clock is UTC and the same expression must mean the same instants after a
 * move. In a time zone with daylight saving, a daily time that does not exist that day
 * (02:30 on the spring-forward night) runs at the first instant after the gap, and a
 * time that happens twice (01:30 on the fall-back night) runs once.
 */
const cache = new Map<string, Cron>();

function parse(expression: string, timezone: string | undefined): Cron {
  const key = `${timezone ?? "UTC"} ${expression}`;
  let cron = cache.get(key);
  if (cron === undefined) {
    // Without a function croner only parses: no timer is started.
    cron = new Cron(expression, { timezone: timezone ?? "UTC", mode: "5-or-6-parts" });
    if (cache.size >= 256) cache.clear();
    cache.set(key, cron);
  }
  return cron;
}

/** Throws a `TypeError` naming the problem when `expression` or `timezone` is not valid. */
export function validateCron(expression: string, timezone: string | undefined): void {
  if (timezone !== undefined) {
    try {
      new Intl.DateTimeFormat("en-US", { timeZone: timezone });
    } catch {
      throw new TypeError(`schedule(): unknown time zone ${JSON.stringify(timezone)}`);
    }
  }
  let next: number | undefined;
  try {
    next = nextCronTime(expression, Date.now(), timezone);
  } catch (error) {
    throw new TypeError(`schedule(): invalid cron expression: ${(error as Error).message}`);
  }
  if (next === undefined) throw new TypeError("schedule(): the cron expression never fires");
}

/** The first time after `afterMs` (epoch ms) that `expression` fires; `undefined`: never. */
export function nextCronTime(
  expression: string,
  afterMs: number,
  timezone?: string,
): number | undefined {
  return parse(expression, timezone).nextRun(new Date(afterMs))?.getTime();
}

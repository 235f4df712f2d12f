import { describe, expect, it } from "vitest";
import { nextCronTime, validateCron } from "../../src/agent/cron.js";

/** Every time `expression` fires in [from, to), in epoch ms. */
function firings(expression: string, from: string, to: string, timezone?: string): number[] {
  const end = Date.parse(to);
  const out: number[] = [];
  let at = Date.parse(from);
  for (;;) {
    const next = nextCronTime(expression, at, timezone);
    if (next === undefined || next >= end) return out;
    out.push(next);
    at = next;
  }
}

const local = (ms: number, timeZone: string) =>
  new Intl.DateTimeFormat("en-CA", {
    timeZone,
    dateStyle: "short",
    timeStyle: "short",
    hourCycle: "h23",
  }).format(ms);

describe("cron expressions (croner)", () => {
  it("a daily cron in a daylight-saving time zone runs exactly once on the spring-forward day, at the first instant after the gap", () => {
    // 2026-03-08: clocks in New York jump from 02:00 to 03:00, so 02:30 does not exist.
    const runs = firings(
      "30 2 * * *",
      "2026-03-06T12:00Z",
      "2026-03-11T00:00Z",
      "America/New_York",
    );
    expect(runs.map((ms) => local(ms, "America/New_York"))).toEqual([
      "2026-03-07, 02:30",
      "2026-03-08, 03:00",
      "2026-03-09, 02:30",
      "2026-03-10, 02:30",
    ]);
  });

  it("a daily cron in a daylight-saving time zone runs exactly once on the fall-back day, though its time happens twice", () => {
    // 2026-11-01: 01:30 New York time happens at 05:30Z (EDT) and again at 06:30Z (EST).
    const runs = firings(
      "30 1 * * *",
      "2026-10-30T12:00Z",
      "2026-11-03T00:00Z",
      "America/New_York",
    );
    expect(runs.map((ms) => new Date(ms).toISOString())).toEqual([
      "2026-10-31T05:30:00.000Z",
      "2026-11-01T05:30:00.000Z",
      "2026-11-02T06:30:00.000Z",
    ]);
  });

  it("an every-30-minutes cron keeps real 30-minute steps through the repeated hour", () => {
    const runs = firings(
      "*/30 * * * *",
      "2026-11-01T04:00Z",
      "2026-11-01T08:00Z",
      "America/New_York",
    );
    expect(runs.slice(1).map((ms, i) => ms - runs[i]!)).toEqual(Array(6).fill(30 * 60_000));
  });

  it("reads five fields with minutes first in UTC by default, and a sixth field as seconds", () => {
    expect(
      new Date(nextCronTime("0 8 * * *", Date.parse("2026-06-01T09:00Z"))!).toISOString(),
    ).toBe("2026-06-02T08:00:00.000Z");
    expect(nextCronTime("*/5 * * * * *", Date.parse("2026-06-01T09:00:01Z"))).toBe(
      Date.parse("2026-06-01T09:00:05Z"),
    );
    expect(() => validateCron("* * *", undefined)).toThrow(TypeError);
    expect(() => validateCron("0 0 30 2 *", undefined)).toThrow(/never fires/);
    expect(() => validateCron("0 * * * *", "Not/AZone")).toThrow(/unknown time zone/);
  });
});

import { describe, expect, it } from "vitest";
import { ExpiryClock } from "../../src/agent/expiry-clock.js";

describe("the shared expiry clock", () => {
  it("tells each item once, after its time and within one tick of it", async () => {
    const clock = new ExpiryClock(20);
    const fired: Array<[string, number]> = [];
    const start = Date.now();
    const item = (name: string) => ({ expire: () => fired.push([name, Date.now()]) });
    clock.at(start + 60, item("late"));
    clock.at(start + 10, item("early"));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(fired.map(([name]) => name)).toEqual(["early", "late"]);
    expect(fired[1]![1]).toBeGreaterThanOrEqual(start + 60);
  });

  it("never tells a cancelled item", async () => {
    const clock = new ExpiryClock(20);
    let told = false;
    const item = {
      expire: () => {
        told = true;
      },
    };
    clock.cancel(clock.at(Date.now() + 30, item), item);
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(told).toBe(false);
  });
});

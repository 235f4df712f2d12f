import { describe, expect, it } from "vitest";
import { ExpiryClock } from "../../src/agent/expiry-clock.js";

describe("the shared expiry clock", () => {
  it("runs each callback once, after its time and within one tick of it", async () => {
    const clock = new ExpiryClock(20);
    const fired: Array<[string, number]> = [];
    const start = Date.now();
    clock.at(start + 60, () => fired.push(["late", Date.now()]));
    clock.at(start + 10, () => fired.push(["early", Date.now()]));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(fired.map(([name]) => name)).toEqual(["early", "late"]);
    expect(fired[1]![1]).toBeGreaterThanOrEqual(start + 60);
  });

  it("never runs a cancelled callback", async () => {
    const clock = new ExpiryClock(20);
    let ran = false;
    const cancel = clock.at(Date.now() + 30, () => {
      ran = true;
    });
    cancel();
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(ran).toBe(false);
  });
});

import { afterEach, describe, expect, it } from "vitest";
import { clusterStorm } from "../../bench/cluster-storm.js";
import { LoadGenerator } from "../../bench/load/index.js";
import { createBenchKeys } from "../../bench/tokens.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("cluster reconnect storm", () => {
  it("every client that lost its connection when one node of three was killed is back through the survivors with its room's state, and no attempt was refused for its credentials", {
    timeout: 180_000,
  }, async () => {
    const keys = await createBenchKeys();
    const load = LoadGenerator.start();
    cleanups.push(() => load.stop());
    await load.run({ cmd: "init", keys });
    await load.run({ cmd: "stormTokens", count: 60, rooms: 6 });
    const r = await clusterStorm(
      load,
      keys,
      { clients: 60, rooms: 6, concurrency: 20, timeoutMs: 60_000 },
      () => {},
    );
    // The dead node's own clients, and others whose room it owned; never all of them.
    expect(r.dropped).toBeGreaterThanOrEqual(20);
    expect(r.dropped).toBeLessThan(60);
    expect(r.back).toBe(r.dropped);
    expect(r.ms100).toBeGreaterThan(0);
    // While the dead node's lease runs, its rooms are "try again" (1013), never a 4xxx.
    expect(Object.keys(r.codes).filter((code) => code !== "1013")).toEqual([]);
  });
});

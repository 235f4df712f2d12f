import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { Agent } from "../../src/agent/agent.js";
import { InstanceRegistry } from "../../src/agent/registry.js";
import { tempDir } from "../helpers/server.js";

/**
 * `drop()` is how a cluster node lets go of an instance it no longer owns: it closes the
 * instance's connections and evicts it once they are gone. Whatever arrives meanwhile must
 * not be handed the instance that is going away.
 */

class Room extends Agent {}

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function registry(): InstanceRegistry {
  const data = tempDir("outpost-drop-");
  const instances = new InstanceRegistry({
    agents: new Map([["room", Room]]),
    dataDir: data.dir,
    env: {},
    logger: pino({ level: "silent" }),
    durability: "process",
    idleTimeout: 60_000,
    maxInstances: 16,
  });
  cleanups.push(
    () => data.remove(),
    () => instances.close(),
  );
  return instances;
}

describe("an instance being dropped", () => {
  it("is not handed out while it drains: get() waits and starts the next activation, which stays open", async () => {
    const instances = registry();
    const old = await instances.get("room", "a");
    // Work in flight keeps the drain waiting (as an RPC still running would).
    let finish!: () => void;
    void old.track(() => new Promise<void>((resolve) => (finish = resolve)));

    const dropped = instances.drop("room", "a", 1013, "node not serving");
    expect(instances.take("room", "a")).toBeUndefined();
    const next = instances.get("room", "a");
    setTimeout(() => finish(), 50);
    const fresh = await next;
    await dropped;

    expect(fresh).not.toBe(old);
    expect(old.closed).toBe(true);
    expect(fresh.closed).toBe(false);
    expect(instances.peek("room", "a")).toBe(fresh);
  });

  it("is dropped once when two drops overlap, and both resolve", async () => {
    const instances = registry();
    const old = await instances.get("room", "b");
    const first = instances.drop("room", "b", 1013, "agent moved");
    const second = instances.drop("room", "b", 1013, "agent moved");
    await Promise.all([first, second]);
    expect(old.closed).toBe(true);
    expect(instances.peek("room", "b")).toBeUndefined();
  });
});

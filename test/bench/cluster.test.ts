import { describe, expect, it } from "vitest";
import { renderTable } from "../../bench/cluster.js";

/** A run's results, with the figures a test cares about overridden. */
function run(rpc: { direct: number; relayed: number }, failoverS: number) {
  return renderTable({
    date: "2026-01-01T00:00:00.000Z",
    quick: false,
    cores: 2,
    loadavg: [1, 1, 1],
    rpc: { directP50: 0.1, directP99: rpc.direct, relayedP50: 0.2, relayedP99: rpc.relayed },
    writes: { cluster: 500, single: 1000 },
    connects: { cluster: 300, single: 600 },
    restore: [{ mib: 4, ms: 40, rows: 6 }],
    failoverS,
  });
}

describe("cluster benchmark report", () => {
  it("checks relayed RPC p99 against 1.5× direct + 1 ms, and failover against 5 s", () => {
    // 1.5 × 2 + 1 = 4 ms: exactly on the target is met, above it is missed.
    expect(run({ direct: 2, relayed: 4 }, 5)).toMatch(/4 ≤ 4 ms: \*\*met\*\*.*5 s: \*\*met\*\*/);
    expect(run({ direct: 2, relayed: 4.1 }, 3)).toMatch(/4\.1 ≤ 4 ms: \*\*missed\*\*/);
    expect(run({ direct: 2, relayed: 3 }, 5.2)).toMatch(/5\.2 s: \*\*missed\*\*/);
  });

  it("gives every measure as a ratio to its reference and says the machine was shared", () => {
    const table = run({ direct: 2, relayed: 3 }, 3);
    expect(table).toContain("| 500 | 1000 | 0.50× |");
    expect(table).toContain("| 300 | 600 | 0.50× |");
    expect(table).toContain("| 3 ms | 2 ms | 1.50× |");
    expect(table).toContain("shared");
  });
});

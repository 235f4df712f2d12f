import { describe, expect, it } from "vitest";
import { parseArgs, settingsFor } from "../../bench/args.js";

describe("bench arguments", () => {
  it("runs everything, five rounds, and rewrites the docs by default", () => {
    const options = parseArgs([]);
    expect(options.contenders).toEqual(["outpost", "bare", "socketio"]);
    expect(options.workloads).toEqual(["connects", "refused", "rpc", "fanout", "memory", "storm"]);
    expect(options.rounds).toBe(5);
    expect(options.writeDocs).toBe(true);
    expect(options.outDir).toBe("bench/results");
  });

  it("--workloads=storm selects the reconnect storm alone, 10,000 clients on 100 rooms (2,000 when quick)", () => {
    expect(parseArgs(["--workloads=storm"]).workloads).toEqual(["storm"]);
    expect(settingsFor({ quick: false }).storm).toMatchObject({ clients: 10_000, rooms: 100 });
    expect(settingsFor({ quick: true }).storm.clients).toBe(2_000);
  });

  it("--quick means one round and leaves BENCHMARKS.md alone unless --docs", () => {
    expect(parseArgs(["--quick"])).toMatchObject({ quick: true, rounds: 1, writeDocs: false });
    expect(parseArgs(["--quick", "--docs"]).writeDocs).toBe(true);
    expect(parseArgs(["--no-docs"]).writeDocs).toBe(false);
  });

  it("keeps the canonical order of contenders and workloads whatever order was typed", () => {
    const options = parseArgs(["--only=socketio,outpost", "--workloads=memory,connects"]);
    expect(options.contenders).toEqual(["outpost", "socketio"]);
    expect(options.workloads).toEqual(["connects", "memory"]);
  });

  it("refuses unknown names, flags and out-of-range rounds with a readable message", () => {
    expect(() => parseArgs(["--only=nginx"])).toThrow(/unknown "nginx"/);
    expect(() => parseArgs(["--workloads="])).toThrow(/needs a value/);
    expect(() => parseArgs(["--fast"])).toThrow(/unknown option --fast/);
    expect(() => parseArgs(["--rounds=0"])).toThrow(/1 to 20/);
    expect(() => parseArgs(["--rounds=2.5"])).toThrow(/1 to 20/);
  });

  it("bounds every workload in time and count, quick mode shorter", () => {
    const quick = settingsFor({ quick: true });
    const full = settingsFor({ quick: false });
    for (const s of [quick, full]) {
      expect(s.connects.durationMs).toBeGreaterThan(0);
      expect(s.connects.maxCount).toBeGreaterThan(0);
      expect(s.refused.maxCount).toBeGreaterThan(0);
      expect(s.rpc.maxCalls).toBeGreaterThan(0);
      expect(s.fanout.timeoutMs).toBeGreaterThan(0);
      expect(s.memory.connections).toBe(10_000);
      expect(s.fanout.clients).toBe(1_000);
    }
    expect(quick.connects.durationMs).toBeLessThan(full.connects.durationMs);
    // A full run warms every server with thousands of connects (the JIT is still compiling
    // the connect path after the first thousand), bounded in time like every window.
    expect(full.warmup.count).toBeGreaterThanOrEqual(8_000);
    expect(full.warmup.maxMs).toBeGreaterThan(0);
    expect(quick.warmup.count).toBeLessThan(full.warmup.count);
    expect(quick.rpc.durationMs).toBeLessThan(full.rpc.durationMs);
  });
});

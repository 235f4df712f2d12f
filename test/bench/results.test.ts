import { describe, expect, it } from "vitest";
import { markdownResults, svgChart, terminalTable } from "../../bench/report.js";
import { addSample, condenseNotes, type Samples, shapeResults } from "../../bench/results.js";
import { quantile } from "../../bench/stats.js";

function sampleRun(): Samples {
  const samples: Samples = {};
  // Three rounds; the median is what is reported.
  for (const [outpost, bare, socketio] of [
    [900, 1000, 400],
    [950, 1100, 420],
    [100, 1050, 410], // one noisy round must not move the median
  ] as const) {
    addSample(samples, "connects", "outpost", outpost);
    addSample(samples, "connects", "bare", bare);
    addSample(samples, "connects", "socketio", socketio);
  }
  addSample(samples, "connects_hs256", "outpost", 950);
  addSample(samples, "connects_hs256", "bare", 1000);
  addSample(samples, "memory", "outpost", 6_000);
  addSample(samples, "memory", "bare", 5_000);
  addSample(samples, "memory", "socketio", 11_000);
  addSample(samples, "fanout", "outpost", 13);
  addSample(samples, "fanout", "bare", 10);
  addSample(samples, "rpc", "outpost", Number.NaN); // a failed measurement is dropped
  return samples;
}

describe("bench results", () => {
  it("reports medians under the names and keys other tooling reads", () => {
    const results = shapeResults(sampleRun(), { cores: 2 }, {});
    expect(results.machine).toEqual({ cores: 2 });
    expect(results.workloads.connects).toMatchObject({
      outpost: 900,
      bare: 1050,
      socketio: 410,
      unit: "conn/s",
    });
    expect(results.workloads.connects?.rounds?.outpost).toEqual([900, 950, 100]);
    expect(results.workloads.memory).toMatchObject({ outpost: 6000, unit: "bytes/conn" });
    expect(results.workloads.fanout).toMatchObject({ outpost: 13, bare: 10, unit: "ms" });
    expect(results.workloads.rpc).toBeUndefined();
  });

  it("computes Outpost's ratios and marks each target met or missed by its direction", () => {
    const results = shapeResults(sampleRun(), {}, {});
    // The median of the rounds' own ratios: 900/1000, 950/1100, 100/1050 → 0.864.
    expect(results.ratios.connects).toEqual({ bare: 0.864, socketio: 2.25 });
    const verdict = (workload: string, against: string) =>
      results.targets.find((t) => t.workload === workload && t.against === against);
    expect(verdict("connects", "bare")).toMatchObject({ met: false, target: "≥ 0.9×" });
    expect(verdict("connects_hs256", "bare")).toMatchObject({ ratio: 0.95, met: true });
    // Socket.IO is in every table and no target: the floor itself misses the old ones.
    expect(results.targets.some((t) => t.against === "socketio")).toBe(false);
    expect(results.ratios.connects?.socketio).toBe(2.25);
    // Lower is better for memory and fan-out.
    expect(verdict("memory", "bare")).toMatchObject({ ratio: 1.2, met: false, target: "≤ 1.1×" });
    expect(verdict("fanout", "bare")).toMatchObject({ ratio: 1.3, met: false });
    expect(verdict("rpc", "bare")).toMatchObject({ ratio: null, met: null });
  });

  it("pairs each round's contenders: a ratio compares them within a round, not medians of different minutes", () => {
    const samples: Samples = {};
    // The HS256 rounds of a full run (conn/s): within a round Outpost was 0.82–0.97× the
    // floor, 0.85× at the median; the two medians (2,916 and 3,008) come from different
    // rounds, and their quotient would read 0.97×.
    const outpost = [2451, 2916, 2300, 3115, 3090];
    const bare = [2988, 3008, 2790, 3665, 3610];
    for (const [k, value] of outpost.entries()) {
      addSample(samples, "connects_hs256", "outpost", value);
      addSample(samples, "connects_hs256", "bare", bare[k]!);
    }
    // A round that failed for one contender pairs nothing, and the others stay paired.
    for (const [outpost, bare] of [
      [800, 1000],
      [Number.NaN, 1000],
      [900, 1000],
      [850, 1000],
    ] as const) {
      addSample(samples, "connects", "outpost", outpost);
      addSample(samples, "connects", "bare", bare);
    }
    const results = shapeResults(samples, {}, {});
    expect(results.workloads.connects_hs256).toMatchObject({ outpost: 2916, bare: 3008 });
    expect(results.ratios.connects_hs256?.bare).toBe(0.85);
    const verdict = results.targets.find((t) => t.workload === "connects_hs256");
    expect(verdict).toMatchObject({ ratio: 0.85, met: false });
    expect(results.workloads.connects?.rounds?.outpost).toEqual([800, null, 900, 850]);
    expect(results.ratios.connects?.bare).toBe(0.85);
  });

  it("renders the table, the Markdown and a well-formed SVG", () => {
    const results = shapeResults(sampleRun(), {}, {});
    const table = terminalTable(results);
    expect(table).toContain("connects/s, EdDSA token");
    expect(table).toContain("0.86×");
    const md = markdownResults(results);
    expect(md).toContain("| connects | bare ws+jose | ≥ 0.9× | 0.86× | **missed** |");
    expect(md).toContain("| fanout | bare ws+jose | ≤ 1.1× | 1.30× | **missed** |");
    const svg = svgChart(results, "a <title> & more");
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
    expect(svg).toContain("a &lt;title&gt; &amp; more");
    expect(svg).not.toContain("NaN");
  });

  it("condenses disturbed-window notes into one line and keeps the others", () => {
    const notes = condenseNotes([
      "connects outpost: no undisturbed window in 3 tries (busy: server 58%, load 27%)",
      "rpc bare: 2 calls answered with an error",
      "connects outpost: no undisturbed window in 3 tries (busy: server 70%, load 30%)",
      "rpc_1000 socketio: no undisturbed window in 3 tries (busy: server 26%, load 18%)",
    ]);
    expect(notes).toHaveLength(2);
    expect(notes[0]).toMatch(/^3 window\(s\) .* all 3 tries/);
    expect(notes[0]).toContain("connects outpost ×2, rpc_1000 socketio");
    expect(notes[1]).toBe("rpc bare: 2 calls answered with an error");
    expect(condenseNotes(["x"])).toEqual(["x"]);
  });

  it("takes nearest-rank quantiles of the filled part of a buffer", () => {
    const buffer = new Float64Array([5, 1, 3, 2, 4, 0, 0]);
    expect(quantile(buffer, 0.5, 5)).toBe(3);
    expect(quantile(buffer, 0.99, 5)).toBe(5);
    expect(quantile(buffer, 0.5, 0)).toBeNaN();
  });
});

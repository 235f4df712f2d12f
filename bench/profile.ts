/**
 * Summarise a V8 CPU profile (from `npm run bench -- --cpu-prof`): the functions with the
 * most self time, and the same grouped by file, so a hot spot can be named without
 * opening DevTools.
 *
 *   npx tsx bench/profile.ts bench/results/profiles/outpost-EdDSA/CPU.*.0.001.cpuprofile \
 *     [--top=25] [--within=/dist/]
 */
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Self time per function and per file, in microseconds, largest first. */
export function summarise(profile: Profile): {
  total: number;
  functions: Array<[string, number]>;
  files: Array<[string, number]>;
} {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => {
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  const functions = new Map<string, number>();
  const files = new Map<string, number>();
  let total = 0;
  for (const [id, micros] of self) {
    const frame = byId.get(id)?.callFrame;
    if (frame === undefined) continue;
    total += micros;
    const file = shorten(frame.url) || `(${frame.functionName || "native"})`;
    const name = `${frame.functionName || "(anonymous)"}  ${file}:${frame.lineNumber + 1}`;
    functions.set(name, (functions.get(name) ?? 0) + micros);
    files.set(file, (files.get(file) ?? 0) + micros);
  }
  const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]);
  return { total, functions: sorted(functions), files: sorted(files) };
}

/**
 * Total time under each function whose file matches `pattern` (e.g. `/src/`), counting
 * what it calls (Node internals, `ws`, `jose`) as its own: "how much does this code cost".
 */
export function inclusive(profile: Profile, pattern: RegExp): Array<[string, number]> {
  const parent = new Map<number, number>();
  for (const node of profile.nodes)
    for (const child of node.children ?? []) parent.set(child, node.id);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const totals = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (frame === undefined || !pattern.test(frame.url)) continue;
      const name = `${frame.functionName || "(anonymous)"}  ${shorten(frame.url)}`;
      // A recursive or re-entered function counts once per sample.
      if (seen.has(name)) continue;
      seen.add(name);
      totals.set(name, (totals.get(name) ?? 0) + (profile.timeDeltas[i] ?? 0));
    }
  });
  return [...totals].sort((a, b) => b[1] - a[1]);
}

function shorten(url: string): string {
  return url
    .replace(/^file:\/\//, "")
    .replace(/^.*\/node_modules\//, "~/")
    .replace(/^.*?\/(src|bench)\//, "$1/");
}

const isMain =
  process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].split("/").pop() ?? "");
if (isMain) {
  const args = process.argv.slice(2);
  const top = Number(args.find((a) => a.startsWith("--top="))?.slice(6) ?? 25);
  for (const path of args.filter((a) => !a.startsWith("--"))) {
    const { total, functions, files } = summarise(
      JSON.parse(readFileSync(path, "utf8")) as Profile,
    );
    const pct = (v: number) => `${((v / total) * 100).toFixed(1).padStart(5)}%`;
    console.log(`\n${path}: ${(total / 1000).toFixed(0)} ms sampled`);
    console.log("\n  self time by function:");
    for (const [name, v] of functions.slice(0, top)) console.log(`  ${pct(v)}  ${name}`);
    console.log("\n  self time by file:");
    for (const [name, v] of files.slice(0, Math.min(top, 15))) console.log(`  ${pct(v)}  ${name}`);
    const within = args.find((a) => a.startsWith("--within="))?.slice(9);
    if (within !== undefined) {
      const profile = JSON.parse(readFileSync(path, "utf8")) as Profile;
      console.log(`\n  total time under functions in files matching ${within}:`);
      for (const [name, v] of inclusive(profile, new RegExp(within)).slice(0, top)) {
        console.log(`  ${pct(v)}  ${(v / 1000).toFixed(0).padStart(6)} ms  ${name}`);
      }
    }
  }
}

/**
 * Turning measurements into the results document: medians over rounds, ratios of Outpost
 * against the floor and the peer, and each target from the issue marked met or missed.
 * No I/O here, so it can be tested on its own.
 */
import { CONTENDERS, type Contender } from "./config.js";
import { median, round } from "./stats.js";

export type Better = "higher" | "lower";

export interface WorkloadSpec {
  key: string;
  label: string;
  unit: string;
  better: Better;
}

/** Every number the run can report, in table order. `connects`, `rpc`, `memory` and
 * `fanout` are the names other tooling reads. */
export const WORKLOADS: readonly WorkloadSpec[] = [
  { key: "connects", label: "connects/s, EdDSA token", unit: "conn/s", better: "higher" },
  { key: "connects_hs256", label: "connects/s, HS256 token", unit: "conn/s", better: "higher" },
  {
    key: "connects_cpu",
    label: "server CPU per connect (EdDSA)",
    unit: "µs/conn",
    better: "lower",
  },
  { key: "rpc", label: "RPC round trips/s, 100 conns", unit: "calls/s", better: "higher" },
  { key: "rpc_p50", label: "RPC p50, 100 conns", unit: "ms", better: "lower" },
  { key: "rpc_p99", label: "RPC p99, 100 conns", unit: "ms", better: "lower" },
  { key: "rpc_cpu", label: "server CPU per call, 100 conns", unit: "µs/call", better: "lower" },
  { key: "rpc_1000", label: "RPC round trips/s, 1,000 conns", unit: "calls/s", better: "higher" },
  { key: "rpc_1000_p50", label: "RPC p50, 1,000 conns", unit: "ms", better: "lower" },
  { key: "rpc_1000_p99", label: "RPC p99, 1,000 conns", unit: "ms", better: "lower" },
  {
    key: "rpc_1000_cpu",
    label: "server CPU per call, 1,000 conns",
    unit: "µs/call",
    better: "lower",
  },
  { key: "fanout", label: "fan-out to 1,000, time to last", unit: "ms", better: "lower" },
  { key: "fanout_first", label: "fan-out to 1,000, time to first", unit: "ms", better: "lower" },
  {
    key: "fanout_cpu",
    label: "server CPU per state change to 1,000",
    unit: "µs/change",
    better: "lower",
  },
  { key: "memory", label: "RSS per idle connection (10,000)", unit: "bytes/conn", better: "lower" },
  { key: "memory_heap", label: "JS heap per idle connection", unit: "bytes/conn", better: "lower" },
  { key: "refused", label: "refused connects/s (forged token)", unit: "conn/s", better: "higher" },
  { key: "refused_cpu", label: "server CPU per refusal", unit: "µs/conn", better: "lower" },
  {
    key: "refused_limited",
    label: "refused connects/s, Outpost failure limit on",
    unit: "conn/s",
    better: "higher",
  },
  {
    key: "refused_limited_cpu",
    label: "server CPU per refusal, failure limit on",
    unit: "µs/conn",
    better: "lower",
  },
  {
    key: "storm_restart",
    label: "reconnect storm: kill until listening again",
    unit: "ms",
    better: "lower",
  },
  {
    key: "storm_99",
    label: "reconnect storm: 99% back with state, from listening",
    unit: "ms",
    better: "lower",
  },
  {
    key: "storm_100",
    label: "reconnect storm: 100% back with state, from listening",
    unit: "ms",
    better: "lower",
  },
  {
    key: "storm_100_kill",
    label: "reconnect storm: 100% back with state, from the kill",
    unit: "ms",
    better: "lower",
  },
  {
    key: "storm_cpu",
    label: "reconnect storm: server CPU per client back",
    unit: "µs/client",
    better: "lower",
  },
  {
    key: "storm_rss",
    label: "reconnect storm: restarted server's peak RSS",
    unit: "MiB",
    better: "lower",
  },
  {
    key: "cluster_storm_99",
    label: "cluster storm: 99% of a dead node's clients back, from the kill",
    unit: "ms",
    better: "lower",
  },
  {
    key: "cluster_storm_100",
    label: "cluster storm: 100% of a dead node's clients back, from the kill",
    unit: "ms",
    better: "lower",
  },
  {
    key: "cluster_storm_dropped",
    label: "cluster storm: clients that lost their connection",
    unit: "clients",
    better: "lower",
  },
  {
    key: "cluster_storm_refusals",
    label: "cluster storm: refused attempts",
    unit: "attempts",
    better: "lower",
  },
  {
    key: "storm_refusals",
    label: "reconnect storm: refused attempts (must be 0)",
    unit: "attempts",
    better: "lower",
  },
];

export interface Target {
  workload: string;
  against: Exclude<Contender, "outpost">;
  /** Outpost ÷ contender must be ≥ this (higher-is-better) or ≤ this (lower-is-better). */
  ratio: number;
}

/**
 * The targets of the issue, as ratios of Outpost to another contender in the same run.
 * Socket.IO has none: the floor itself does not reach the ones it once had (2× connects,
 * 1.5× RPC at 100, 0.6× memory), so it is a column in every table and a target in none.
 */
export const TARGETS: readonly Target[] = [
  { workload: "connects", against: "bare", ratio: 0.9 },
  { workload: "connects_hs256", against: "bare", ratio: 0.9 },
  { workload: "connects_cpu", against: "bare", ratio: 1.1 },
  { workload: "refused", against: "bare", ratio: 0.9 },
  { workload: "rpc", against: "bare", ratio: 0.95 },
  { workload: "rpc_p99", against: "bare", ratio: 1.1 },
  { workload: "rpc_1000", against: "bare", ratio: 0.95 },
  { workload: "rpc_1000_p99", against: "bare", ratio: 1.1 },
  { workload: "memory", against: "bare", ratio: 1.1 },
  { workload: "fanout", against: "bare", ratio: 1.1 },
];

/** Raw measurements: workload → contender → one value per round. */
export type Samples = Record<string, Partial<Record<Contender, number[]>>>;

export function addSample(samples: Samples, workload: string, contender: Contender, value: number) {
  // A failed measurement (NaN) keeps its place, so round k of every contender stays round k;
  // it counts in no median and no ratio.
  samples[workload] ??= {};
  const row = samples[workload];
  row[contender] ??= [];
  row[contender].push(value);
}

/** One workload in the results: a number per contender that ran, plus its unit. */
export type WorkloadResult = Partial<Record<Contender, number>> & {
  unit: string;
  label: string;
  better: Better;
  /** Values of each round, to show the spread and to pair rounds; null: that round failed. */
  rounds?: Partial<Record<Contender, Array<number | null>>>;
};

export interface TargetResult {
  workload: string;
  against: Exclude<Contender, "outpost">;
  /** E.g. "≥ 0.85×". */
  target: string;
  ratio: number | null;
  met: boolean | null;
}

/** Clients back over time in one storm: `curve[k]` ms after the kill, k × `step` were back. */
export interface StormCurve {
  clients: number;
  /** Clients per point of the curve. */
  step: number;
  /** Milliseconds from the kill until the restarted server was listening. */
  listeningMs: number;
  curve: number[];
}

export interface Results {
  machine: Record<string, unknown>;
  settings: Record<string, unknown>;
  workloads: Record<string, WorkloadResult>;
  /** Outpost ÷ each other contender, per workload. */
  ratios: Record<string, Partial<Record<Exclude<Contender, "outpost">, number>>>;
  targets: TargetResult[];
  notes: string[];
  /** The reconnect storm of the last round, per contender, for the chart. */
  storm?: Partial<Record<Contender, StormCurve>>;
}

function spec(key: string): WorkloadSpec {
  const found = WORKLOADS.find((w) => w.key === key);
  if (found === undefined) throw new Error(`unknown workload ${key}`);
  return found;
}

/**
 * Outpost ÷ `against` for a workload, or null when either is missing: the median of the
 * rounds' own ratios. The contenders take turns within a round, so a round's ratio compares
 * them on the machine as it was for that minute; a ratio of medians could pair Outpost's
 * round on a fast minute with the floor's on a slow one. Without rounds to pair (one round,
 * or results from before they were kept), the ratio of the medians.
 */
export function ratioOf(
  workloads: Record<string, WorkloadResult>,
  key: string,
  against: Contender,
): number | null {
  const row = workloads[key];
  const outpost = row?.outpost;
  const other = row?.[against];
  if (outpost === undefined || other === undefined || other === 0) return null;
  const mine = row?.rounds?.outpost;
  const theirs = row?.rounds?.[against];
  if (mine !== undefined && theirs !== undefined && mine.length === theirs.length) {
    const paired: number[] = [];
    for (const [k, value] of mine.entries()) {
      const base = theirs[k];
      if (value !== null && base !== null && base !== undefined && base !== 0) {
        paired.push(value / base);
      }
    }
    if (paired.length > 1) return median(paired);
  }
  return outpost / other;
}

/** Outpost ÷ each other contender, per workload (see `ratioOf`). */
export function ratiosOf(workloads: Record<string, WorkloadResult>): Results["ratios"] {
  const ratios: Results["ratios"] = {};
  for (const key of Object.keys(workloads)) {
    for (const against of ["bare", "socketio"] as const) {
      const ratio = ratioOf(workloads, key, against);
      if (ratio === null) continue;
      ratios[key] ??= {};
      ratios[key]![against] = round(ratio);
    }
  }
  return ratios;
}

export function evaluateTargets(workloads: Record<string, WorkloadResult>): TargetResult[] {
  return TARGETS.map((t) => {
    const better = spec(t.workload).better;
    const ratio = ratioOf(workloads, t.workload, t.against);
    return {
      workload: t.workload,
      against: t.against,
      target: `${better === "higher" ? "≥" : "≤"} ${t.ratio}×`,
      ratio: ratio === null ? null : round(ratio),
      met: ratio === null ? null : better === "higher" ? ratio >= t.ratio : ratio <= t.ratio,
    };
  });
}

/** What `measure()` notes when another program kept both processes off their cores. */
const DISTURBED = /^(\S+) (\S+): no undisturbed window in (\d+) tries/;

/**
 * One line for all the disturbed windows instead of one per window; other notes as they are.
 * Each such window is still measured (its least disturbed try is kept) and counts in the
 * median like any other round.
 */
export function condenseNotes(notes: readonly string[]): string[] {
  const counts = new Map<string, number>();
  let tries = 0;
  const rest: string[] = [];
  for (const note of notes) {
    const match = DISTURBED.exec(note);
    if (match === null) {
      rest.push(note);
      continue;
    }
    const key = `${match[1]} ${match[2]}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    tries = Math.max(tries, Number(match[3]));
  }
  if (counts.size === 0) return rest;
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  const list = [...counts].map(([key, n]) => (n > 1 ? `${key} ×${n}` : key)).join(", ");
  return [
    `${total} window(s) where other programs kept both processes below 85% of their cores in all ${tries} tries (the least disturbed try is kept; the median over rounds absorbs them): ${list}`,
    ...rest,
  ];
}

/** Medians over rounds, ratios and targets: the document written to latest.json. */
export function shapeResults(
  samples: Samples,
  machine: Record<string, unknown>,
  settings: Record<string, unknown>,
  notes: string[] = [],
): Results {
  const workloads: Record<string, WorkloadResult> = {};
  for (const w of WORKLOADS) {
    const row = samples[w.key];
    if (row === undefined) continue;
    const result: WorkloadResult = { unit: w.unit, label: w.label, better: w.better };
    const rounds: Partial<Record<Contender, Array<number | null>>> = {};
    let multi = false;
    for (const contender of CONTENDERS) {
      const values = row[contender];
      const measured = values?.filter((v) => Number.isFinite(v)) ?? [];
      if (values === undefined || measured.length === 0) continue;
      result[contender] = round(median(measured), 4);
      rounds[contender] = values.map((v) => (Number.isFinite(v) ? round(v, 4) : null));
      if (values.length > 1) multi = true;
    }
    if (Object.keys(rounds).length === 0) continue;
    if (multi) result.rounds = rounds;
    workloads[w.key] = result;
  }
  return {
    machine,
    settings,
    workloads,
    ratios: ratiosOf(workloads),
    targets: evaluateTargets(workloads),
    notes: condenseNotes(notes),
  };
}

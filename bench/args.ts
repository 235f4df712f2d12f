/** Command-line options of `npm run bench`, and the settings each mode implies. */
import { CONTENDERS, type Contender } from "./config.js";

export const WORKLOAD_GROUPS = [
  "connects",
  "refused",
  "rpc",
  "fanout",
  "memory",
  "storm",
  "cluster-storm",
] as const;
export type WorkloadGroup = (typeof WORKLOAD_GROUPS)[number];
/** What a run measures unless told otherwise: the cluster storm needs PostgreSQL, so it is asked for. */
export const DEFAULT_WORKLOADS: readonly WorkloadGroup[] = WORKLOAD_GROUPS.filter(
  (w) => w !== "cluster-storm",
);

export interface BenchOptions {
  quick: boolean;
  contenders: Contender[];
  workloads: WorkloadGroup[];
  /** Repetitions of every workload; the median is reported. */
  rounds: number;
  /** Write V8 CPU profiles of the servers to the output directory. */
  cpuProf: boolean;
  /** Where results go (relative to the repository root). */
  outDir: string;
  /** Rewrite the results section of BENCHMARKS.md (default: on for full runs only). */
  writeDocs: boolean;
  /** Measure nothing: draw the chart and tables again from the output directory's latest.json. */
  render: boolean;
  help: boolean;
}

export const USAGE = `Usage: npm run bench -- [options]

  --quick              short windows, one round (a few minutes)
  --only=a,b           contenders: ${CONTENDERS.join(", ")} (default all)
  --workloads=a,b      ${WORKLOAD_GROUPS.join(", ")}
                       (default all but cluster-storm, which needs PostgreSQL:
                       OUTPOST_BENCH_POSTGRES, default postgres://postgres@127.0.0.1:5432/test)
  --rounds=N           repetitions per workload, median reported (default 5, quick 1)
  --cpu-prof           write the servers' CPU profiles to the output directory
  --out=DIR            output directory (default bench/results)
  --docs / --no-docs   rewrite the results in BENCHMARKS.md (default: full runs only)
  --render             measure nothing: redraw chart, tables and docs from latest.json
  --cluster            the cluster run instead (bench/cluster.ts): relayed vs direct RPC,
                       write turns, connects, restore and failover on 3 nodes and PostgreSQL
                       (OUTPOST_POSTGRES); takes --quick, --out, --docs / --no-docs
  --help               this text
`;

function list<T extends string>(value: string, allowed: readonly T[], flag: string): T[] {
  const items = value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const item of items) {
    if (!allowed.includes(item as T)) {
      throw new Error(`${flag}: unknown "${item}" (expected ${allowed.join(", ")})`);
    }
  }
  if (items.length === 0) throw new Error(`${flag}: empty list`);
  // Keep the canonical order whatever order was typed.
  return allowed.filter((a) => items.includes(a));
}

/** Parse argv (without `node` and the script); throws with a readable message on bad input. */
export function parseArgs(argv: readonly string[]): BenchOptions {
  const options: BenchOptions = {
    quick: false,
    contenders: [...CONTENDERS],
    workloads: [...DEFAULT_WORKLOADS],
    rounds: 0,
    cpuProf: false,
    outDir: "bench/results",
    writeDocs: false,
    render: false,
    help: false,
  };
  let docs: boolean | undefined;
  for (const arg of argv) {
    const [flag, value] = arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, undefined];
    const need = () => {
      if (value === undefined || value === "")
        throw new Error(`${flag} needs a value: ${flag}=...`);
      return value;
    };
    switch (flag) {
      case "--quick":
        options.quick = true;
        break;
      case "--only":
        options.contenders = list(need(), CONTENDERS, flag);
        break;
      case "--workloads":
        options.workloads = list(need(), WORKLOAD_GROUPS, flag);
        break;
      case "--rounds": {
        const rounds = Number(need());
        if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) {
          throw new Error("--rounds must be an integer from 1 to 20");
        }
        options.rounds = rounds;
        break;
      }
      case "--cpu-prof":
        options.cpuProf = true;
        break;
      case "--out":
        options.outDir = need();
        break;
      case "--docs":
        docs = true;
        break;
      case "--no-docs":
        docs = false;
        break;
      case "--render":
        options.render = true;
        break;
      case "--help":
      case "-h":
        options.help = true;
        break;
      default:
        throw new Error(`unknown option ${arg}\n\n${USAGE}`);
    }
  }
  if (options.rounds === 0) options.rounds = options.quick ? 1 : 5;
  options.writeDocs = docs ?? !options.quick;
  return options;
}

/** Windows, counts and concurrency of every workload, by mode. */
export interface Settings {
  /**
   * Connects (accepted, then refused) each server takes before its connect and refusal
   * windows, within `maxMs`: enough for the JIT to have compiled the path being timed.
   */
  warmup: { count: number; maxMs: number };
  /** Tries at a throughput window when another program took the cores during it. */
  attempts: number;
  /** No second tries after this many milliseconds into the run (keeps quick mode short). */
  retryUntilMs: number;
  /**
   * A connect or refusal window of `durationMs` per contender, taken in `slices` slices that
   * alternate between the contenders (see `interleaved` in run.ts).
   */
  connects: { durationMs: number; slices: number; maxCount: number; concurrency: number };
  refused: { durationMs: number; slices: number; maxCount: number; concurrency: number };
  /**
   * RPC windows of `durationMs` per contender in `slices` alternating slices; the first
   * slice starts after `warmupMs`, the others after `resumeMs` (the loops' first calls).
   */
  rpc: { warmupMs: number; resumeMs: number; durationMs: number; slices: number; maxCalls: number };
  fanout: { clients: number; reps: number; timeoutMs: number };
  memory: { connections: number; concurrency: number };
  /**
   * Reconnect storm: `clients` authenticated clients over `rooms` instances; the server is
   * killed and started again, and every client must be back within `timeoutMs`.
   */
  storm: { clients: number; rooms: number; concurrency: number; timeoutMs: number };
  /** The storm on three cluster nodes, one of them killed (Outpost only). */
  clusterStorm: { clients: number; rooms: number; concurrency: number; timeoutMs: number };
}

export function settingsFor(options: Pick<BenchOptions, "quick">): Settings {
  const quick = options.quick;
  return {
    warmup: { count: quick ? 1_500 : 8_000, maxMs: quick ? 3_000 : 30_000 },
    attempts: quick ? 2 : 3,
    retryUntilMs: quick ? 50_000 : 30 * 60_000,
    connects: {
      // Ten seconds: a 3 s window let one minute's noise of this kind of machine swing a
      // round's ratio from 0.82x to 0.97x; over 30 s the same servers stayed within 3%.
      durationMs: quick ? 2_000 : 10_000,
      slices: quick ? 1 : 5,
      maxCount: quick ? 12_000 : 40_000,
      concurrency: 64,
    },
    refused: {
      // Ten seconds too: over 2.5 s the same code read 0.85x in a full run and 0.92x alone
      // right after.
      durationMs: quick ? 1_500 : 10_000,
      slices: quick ? 1 : 5,
      maxCount: quick ? 12_000 : 40_000,
      concurrency: 64,
    },
    rpc: {
      warmupMs: quick ? 500 : 1_000,
      resumeMs: 250,
      durationMs: quick ? 2_000 : 4_500,
      slices: quick ? 1 : 3,
      maxCalls: quick ? 200_000 : 500_000,
    },
    fanout: { clients: 1_000, reps: quick ? 10 : 20, timeoutMs: 10_000 },
    memory: { connections: 10_000, concurrency: 200 },
    storm: {
      clients: quick ? 2_000 : 10_000,
      rooms: 100,
      concurrency: 200,
      timeoutMs: 120_000,
    },
    // Fewer clients than the one-server storm: the three nodes share the one server core,
    // and every client carried to another node's instance costs both nodes.
    clusterStorm: {
      clients: quick ? 900 : 3_000,
      rooms: 100,
      concurrency: 100,
      timeoutMs: 90_000,
    },
  };
}

/** Commands the orchestrator sends the load generator, and what comes back. */
import type { Algorithm, BenchKeys, Contender } from "../config.js";

export interface Target {
  contender: Contender;
  port: number;
}

export type LoadCommand =
  | { cmd: "init"; keys: BenchKeys }
  /** Sign `count` tokens per algorithm ahead of the timed windows. */
  | { cmd: "tokens"; algorithm: Algorithm; count: number }
  | ({
      cmd: "connects";
      algorithm: Algorithm;
      durationMs: number;
      maxCount: number;
      concurrency: number;
    } & Target)
  | ({ cmd: "refused"; durationMs: number; maxCount: number; concurrency: number } & Target)
  /** Open `count` authenticated connections and hold them for the next commands. */
  | ({
      cmd: "open";
      algorithm: Algorithm;
      count: number;
      concurrency: number;
      /** First token of the pool to use, so held connections do not share tokens. */
      offset?: number;
    } & Target)
  | { cmd: "rpc"; warmupMs: number; durationMs: number; maxCalls: number }
  | { cmd: "fanout"; reps: number; timeoutMs: number }
  | { cmd: "closeAll" };

export interface Request {
  id: number;
  command: LoadCommand;
}

export type Reply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: string }
  | { type: "progress"; text: string };

/** Every result also says how busy the load generator's core was (0..1) while it ran. */
export interface ClientLoad {
  clientBusy?: number;
}

export interface ConnectsResult extends ClientLoad {
  completed: number;
  failed: number;
  elapsedMs: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
}

export interface RefusedResult extends ClientLoad {
  refused: number;
  /** Attempts that ended any other way (accepted, reset, timed out). */
  other: number;
  elapsedMs: number;
  perSecond: number;
  p50Ms: number;
  /** Close codes seen, e.g. `{ "4001": 5000 }`. */
  codes: Record<string, number>;
}

export interface OpenResult {
  opened: number;
  failed: number;
  elapsedMs: number;
}

export interface RpcResult extends ClientLoad {
  /** Calls answered in the measured window. */
  calls: number;
  /** Calls answered from the first send to the end, warm-up included (for CPU per call). */
  totalCalls: number;
  elapsedMs: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

export interface FanoutResult {
  /** Time from the state change request until the last client had it, per repetition. */
  lastMs: number[];
  firstMs: number[];
  clients: number;
  timeouts: number;
}

/** Commands the orchestrator sends the load generator, and what comes back. */
import type { Algorithm, BenchKeys, Contender } from "../config.js";

export interface Target {
  contender: Contender;
  port: number;
  /** The nodes of a cluster, when there are several: client i starts on node i mod n. */
  ports?: number[];
}

export type LoadCommand =
  | { cmd: "init"; keys: BenchKeys }
  /** Sign `count` tokens of an algorithm ahead of the timed windows, replacing any before. */
  | { cmd: "tokens"; algorithm: Algorithm; count: number }
  | ({
      cmd: "connects";
      algorithm: Algorithm;
      durationMs: number;
      maxCount: number;
      concurrency: number;
    } & Target)
  | ({ cmd: "refused"; durationMs: number; maxCount: number; concurrency: number } & Target)
  /**
   * Open `count` authenticated connections and hold them for the next commands, in a set of
   * their contender's (every contender's set can be open at once, for interleaved windows).
   */
  | ({
      cmd: "open";
      algorithm: Algorithm;
      count: number;
      concurrency: number;
      /** First token of the pool to use, so held connections do not share tokens. */
      offset?: number;
    } & Target)
  /**
   * Echo calls on `contender`'s held connections. Latencies add up over the slices of one
   * window until a slice is `fresh` (the first of a window); p50 and p99 cover them all.
   */
  | {
      cmd: "rpc";
      contender: Contender;
      fresh: boolean;
      warmupMs: number;
      durationMs: number;
      maxCalls: number;
    }
  | { cmd: "fanout"; contender: Contender; reps: number; timeoutMs: number }
  /** Close every held connection, of every contender. */
  | { cmd: "closeAll" }
  /** Reconnect storm: sign a token per client for its room (client i in room i mod rooms). */
  | { cmd: "stormTokens"; count: number; rooms: number }
  /** Open the storm's clients and give every room a state of its own. */
  | ({ cmd: "stormOpen"; count: number; rooms: number; concurrency: number } & Target)
  /** From now on every dropped client reconnects on its own schedule. */
  | { cmd: "stormArm" }
  /** Clients dial only these ports from now on (the nodes still alive). */
  | { cmd: "stormRoute"; ports: number[] }
  /** Wait until every client is back with its state, or the time bound. */
  | { cmd: "stormWait"; timeoutMs: number }
  | { cmd: "stormClose" };

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
  /** Calls answered in the measured window (this slice). */
  calls: number;
  /** Calls answered from the first send to the end, warm-up included (for CPU per call). */
  totalCalls: number;
  elapsedMs: number;
  perSecond: number;
  /** Over every slice of the window so far. */
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

export interface StormOpenResult {
  opened: number;
  failed: number;
  elapsedMs: number;
}

export interface StormResult extends ClientLoad {
  clients: number;
  /** Clients that lost their connection (all of them when the one server is killed). */
  dropped: number;
  /** Clients back with their room's state as it was before the restart. */
  back: number;
  /** Connections that came back with another state (the room forgot it). */
  stale: number;
  /** Connection attempts after the drop, successful or not. */
  dials: number;
  /** Each client's wait from its drop to its first redial, in ms (the schedule at work). */
  firstDelays: number[];
  /** Attempts the restarted server answered with a refusal (close code or HTTP status). */
  refusals: number;
  /** Refusals by close code or `HTTP <status>`. */
  codes: Record<string, number>;
  /** When the first client saw its socket drop (epoch ms). */
  firstCloseAt: number;
  /** When each client that came back had its state (epoch ms), ascending. */
  backAt: number[];
}

/**
 * The load generator's workloads. Each is bounded by a deadline and by a count, and stops
 * by itself; latencies are taken with the monotonic clock on this one process.
 */
import { performance } from "node:perf_hooks";
import { ECHO_PAYLOAD } from "../config.js";
import { quantile } from "../stats.js";
import type {
  ConnectsResult,
  FanoutResult,
  OpenResult,
  RefusedResult,
  RpcResult,
  Target,
} from "./protocol.js";
import { type AppFrame, BenchSocket, closeSockets, type SocketEvents } from "./socket.js";

const now = () => performance.now();
/** Grace after a deadline for attempts in flight, before they are cut off. */
const DRAIN_MS = 15_000;

export type Progress = (text: string) => void;

/**
 * Run `attempt` with `concurrency` in flight until `count` have started or the deadline
 * passes; `attempt(i, done)` must call `done(ok)` exactly once.
 */
function pool(
  count: number,
  concurrency: number,
  durationMs: number,
  attempt: (index: number, done: (ok: boolean) => void) => { abort(): void },
  progress?: Progress,
): Promise<{ ok: number; failed: number; elapsedMs: number }> {
  return new Promise((resolve) => {
    const start = now();
    const deadline = start + durationMs;
    const live = new Map<number, { abort(): void }>();
    let next = 0;
    let ok = 0;
    let failed = 0;
    let finished = false;
    let lastReport = start;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(cutoff);
      for (const handle of live.values()) handle.abort();
      resolve({ ok, failed: failed + live.size, elapsedMs: now() - start });
    };
    const cutoff = setTimeout(finish, durationMs + DRAIN_MS);
    const launch = () => {
      const t = now();
      while (live.size < concurrency && next < count && t < deadline) {
        const index = next++;
        let settled = false;
        const handle = attempt(index, (success) => {
          if (settled) return;
          settled = true;
          live.delete(index);
          if (success) ok++;
          else failed++;
          if (!finished) launch();
        });
        if (!settled) live.set(index, handle);
      }
      if (progress !== undefined && t - lastReport > 500) {
        lastReport = t;
        progress(`${ok + failed}/${count}`);
      }
      if (live.size === 0 && !finished) finish();
    };
    launch();
  });
}

/** Workload 1: open, verify, first frame, close — `concurrency` clients in parallel. */
export async function connects(
  target: Target,
  tokens: readonly string[],
  options: { durationMs: number; maxCount: number; concurrency: number },
  progress?: Progress,
): Promise<ConnectsResult> {
  const count = Math.min(options.maxCount, tokens.length);
  const latencies = new Float64Array(count);
  let measured = 0;
  const run = await pool(
    count,
    options.concurrency,
    options.durationMs,
    (index, done) => {
      const started = now();
      const socket = new BenchSocket(target.contender, target.port, tokens[index]!, {
        onFrame(s: BenchSocket, frame: AppFrame) {
          if (frame.type !== "cf_agent_identity") return;
          latencies[measured++] = now() - started;
          s.close();
          done(true);
        },
        onRefused: () => done(false),
        onClosed: () => done(false),
      });
      return { abort: () => socket.terminate() };
    },
    progress,
  );
  return {
    completed: run.ok,
    failed: run.failed,
    elapsedMs: run.elapsedMs,
    perSecond: (run.ok / run.elapsedMs) * 1000,
    p50Ms: quantile(latencies, 0.5, measured),
    p99Ms: quantile(latencies, 0.99, measured),
  };
}

/** Workload 5: connections with a forged token, each refused by the server. */
export async function refused(
  target: Target,
  token: string,
  options: { durationMs: number; maxCount: number; concurrency: number },
  progress?: Progress,
): Promise<RefusedResult> {
  const latencies = new Float64Array(options.maxCount);
  const codes: Record<string, number> = {};
  let measured = 0;
  const count = (code: number) => {
    codes[code] = (codes[code] ?? 0) + 1;
  };
  const run = await pool(
    options.maxCount,
    options.concurrency,
    options.durationMs,
    (_index, done) => {
      const started = now();
      const socket = new BenchSocket(target.contender, target.port, token, {
        onFrame(s: BenchSocket) {
          // A refused token must never reach the agent: count it, and hang up.
          count(0);
          s.terminate();
          done(false);
        },
        onRefused(_s, code) {
          latencies[measured++] = now() - started;
          count(code);
          done(true);
        },
        onClosed(_s, code) {
          count(code);
          done(false);
        },
      });
      return { abort: () => socket.terminate() };
    },
    progress,
  );
  return {
    refused: run.ok,
    other: run.failed,
    elapsedMs: run.elapsedMs,
    perSecond: (run.ok / run.elapsedMs) * 1000,
    p50Ms: quantile(latencies, 0.5, measured),
    codes,
  };
}

/** Connections held open between commands; their events go to whichever phase is running. */
export class HeldConnections {
  sockets: BenchSocket[] = [];
  #handler: Partial<SocketEvents> = {};
  /** RPC latencies of the current window, over its slices so far. */
  #latencies = new Float64Array(0);
  #measured = 0;
  readonly #events: SocketEvents = {
    onFrame: (s, f) => this.#handler.onFrame?.(s, f),
    onRefused: (s, c) => this.#handler.onRefused?.(s, c),
    onClosed: (s, c) => this.#handler.onClosed?.(s, c),
  };

  /** Open `count` connections, each ready once its state frame has arrived. */
  async open(
    target: Target,
    tokens: readonly string[],
    options: { count: number; concurrency: number },
    progress?: Progress,
  ): Promise<OpenResult> {
    const count = Math.min(options.count, tokens.length);
    const pending = new Map<BenchSocket, (ok: boolean) => void>();
    this.#handler = {
      onFrame(s, frame) {
        if (frame.type === "cf_agent_state") pending.get(s)?.(true);
      },
      onRefused: (s) => pending.get(s)?.(false),
      onClosed: (s) => pending.get(s)?.(false),
    };
    const run = await pool(
      count,
      options.concurrency,
      // Opening is bounded by count; the time bound only guards against a stuck server.
      120_000,
      (index, done) => {
        const socket = new BenchSocket(target.contender, target.port, tokens[index]!, this.#events);
        socket.index = index;
        pending.set(socket, (ok) => {
          pending.delete(socket);
          if (ok) this.sockets.push(socket);
          done(ok);
        });
        return { abort: () => socket.terminate() };
      },
      progress,
    );
    this.#handler = {};
    return { opened: this.sockets.length, failed: run.failed, elapsedMs: run.elapsedMs };
  }

  /**
   * Workload 2: every held connection runs a closed loop of echo calls (one in flight
   * each). Calls that finish during the warm-up are not counted. A window may come in
   * slices: p50 and p99 are over every call measured since the last `fresh` slice, up to
   * `maxCalls` in all.
   */
  rpc(options: {
    fresh: boolean;
    warmupMs: number;
    durationMs: number;
    maxCalls: number;
  }): Promise<RpcResult> {
    const sockets = this.sockets;
    if (options.fresh || this.#latencies.length !== options.maxCalls) {
      this.#latencies = new Float64Array(options.maxCalls);
      this.#measured = 0;
    }
    const latencies = this.#latencies;
    let calls = 0;
    let totalCalls = 0;
    let errors = 0;
    let seq = 0;
    let active = 0;
    const start = now();
    const measureFrom = start + options.warmupMs;
    const deadline = measureFrom + options.durationMs;
    let measureEnd = this.#measured === options.maxCalls ? measureFrom : deadline;
    return new Promise((resolve) => {
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        clearTimeout(cutoff);
        this.#handler = {};
        const elapsedMs = Math.max(1, Math.min(measureEnd, now()) - measureFrom);
        resolve({
          calls,
          totalCalls,
          elapsedMs,
          perSecond: (calls / elapsedMs) * 1000,
          p50Ms: quantile(latencies, 0.5, this.#measured),
          p99Ms: quantile(latencies, 0.99, this.#measured),
          errors,
        });
      };
      const cutoff = setTimeout(finish, options.warmupMs + options.durationMs + DRAIN_MS);
      const send = (s: BenchSocket) => {
        s.sentAt = now();
        s.call(`r${seq++}`, "echo", [ECHO_PAYLOAD]);
      };
      const stop = () => {
        active--;
        if (active === 0) finish();
      };
      this.#handler = {
        onFrame: (s, frame) => {
          if (frame.type !== "rpc") return;
          const t = now();
          totalCalls++;
          if (frame.success !== true) errors++;
          else if (t >= measureFrom && t < measureEnd) {
            calls++;
            latencies[this.#measured++] = t - s.sentAt;
            if (this.#measured === options.maxCalls) measureEnd = t;
          }
          if (t < measureEnd) send(s);
          else stop();
        },
        onRefused: stop,
        onClosed: stop,
      };
      active = sockets.length;
      if (active === 0) finish();
      for (const s of sockets) send(s);
    });
  }

  /**
   * Workload 4: the first connection asks for one state change; measure until every held
   * connection (the caller too) has the new state. Repeated `reps` times, one at a time.
   */
  async fanout(options: { reps: number; timeoutMs: number }): Promise<FanoutResult> {
    const sockets = this.sockets;
    const result: FanoutResult = { lastMs: [], firstMs: [], clients: sockets.length, timeouts: 0 };
    const trigger = sockets[0];
    if (trigger === undefined) return result;
    for (let rep = 0; rep < options.reps; rep++) {
      const outcome = await new Promise<{ first: number; last: number } | undefined>((resolve) => {
        let received = 0;
        let first = 0;
        const start = now();
        const timer = setTimeout(() => resolve(undefined), options.timeoutMs);
        this.#handler = {
          onFrame(_s, frame) {
            if (frame.type !== "cf_agent_state") return;
            received++;
            if (received === 1) first = now() - start;
            if (received === sockets.length) {
              clearTimeout(timer);
              resolve({ first, last: now() - start });
            }
          },
        };
        trigger.call(`b${rep}`, "bump", []);
      });
      this.#handler = {};
      if (outcome === undefined) {
        result.timeouts++;
        break;
      }
      result.firstMs.push(outcome.first);
      result.lastMs.push(outcome.last);
      // Let the acknowledgement and any stragglers land before the next change.
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    return result;
  }

  async closeAll(): Promise<void> {
    const sockets = this.sockets;
    this.sockets = [];
    this.#handler = {};
    await closeSockets(sockets);
  }
}

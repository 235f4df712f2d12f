/** The orchestrator's handle on the load-generator process. */
import type { ChildProcess } from "node:child_process";
import { startChild, stopChild } from "../child.js";
import type { LoadCommand, OpenResult, Reply, Target } from "./protocol.js";

/** Core the load generator runs on; the servers get the other one. */
export const LOAD_CPU = 1;

export class LoadGenerator {
  #nextId = 0;
  readonly #waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  onProgress: (text: string) => void = () => {};

  private constructor(private readonly child: ChildProcess) {
    child.on("message", (message: Reply) => {
      if ("type" in message) {
        this.onProgress(message.text);
        return;
      }
      const waiter = this.#waiting.get(message.id);
      if (waiter === undefined) return;
      this.#waiting.delete(message.id);
      if (message.ok) waiter.resolve(message.result);
      else waiter.reject(new Error(`load generator: ${message.error}`));
    });
    child.once("exit", (code) => {
      for (const waiter of this.#waiting.values()) {
        waiter.reject(new Error(`load generator exited (${code})`));
      }
      this.#waiting.clear();
    });
  }

  static start(): LoadGenerator {
    return new LoadGenerator(startChild("bench/load/worker.ts", { cpu: LOAD_CPU }));
  }

  /** Run one command; commands run one after another in the generator. */
  run<T>(command: LoadCommand): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, command });
    });
  }

  /**
   * How the memory measurements open idle connections: one first (the agent instance and
   * its database are not per connection), then `baseline()`, then `count` more, each with
   * its own token.
   */
  async openIdle(
    target: Target,
    count: number,
    concurrency: number,
    baseline: () => Promise<void>,
  ): Promise<OpenResult> {
    await this.run<OpenResult>({
      cmd: "open",
      ...target,
      algorithm: "EdDSA",
      count: 1,
      concurrency: 1,
    });
    await baseline();
    return this.run<OpenResult>({
      cmd: "open",
      ...target,
      algorithm: "EdDSA",
      count,
      concurrency,
      offset: 1,
    });
  }

  stop(): Promise<void> {
    return stopChild(this.child);
  }
}

import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { MembershipOptions } from "../../src/cluster/membership.js";
import { waitFor } from "../helpers/wait.js";

const SCRIPT = fileURLToPath(new URL("./node-child.ts", import.meta.url));

/** A line the child printed: a reply to a command, or an event. */
export type ChildLine = { event?: string; reply?: number; ok?: boolean; [key: string]: unknown };

/** A cluster node in a child process (see node-child.ts). */
export interface NodeProcess {
  readonly child: ChildProcess;
  /** Every event line printed so far, in order. */
  readonly events: ChildLine[];
  /** Send a command and resolve with its reply. */
  send(command: Record<string, unknown>): Promise<ChildLine>;
  /** Wait until an event matching `match` was printed; resolves with it. */
  waitEvent(
    match: (line: ChildLine) => boolean,
    what: string,
    timeoutMs?: number,
  ): Promise<ChildLine>;
  kill(): Promise<void>;
}

/**
 * Start a node process; resolves once it has registered. `script` is the child to run
 * (node-child.ts unless given), which reads `options` from its first argument.
 */
export async function spawnNode(
  options: MembershipOptions & Record<string, unknown>,
  script = SCRIPT,
): Promise<NodeProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", script, JSON.stringify(options)], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const events: ChildLine[] = [];
  const replies = new Map<number, (line: ChildLine) => void>();
  createInterface({ input: child.stdout! }).on("line", (text) => {
    const line = JSON.parse(text) as ChildLine;
    if (line.reply !== undefined) replies.get(line.reply)?.(line);
    else events.push(line);
  });
  let nextId = 1;
  const node: NodeProcess = {
    child,
    events,
    send(command) {
      const id = nextId++;
      return new Promise((resolve) => {
        replies.set(id, resolve);
        child.stdin!.write(`${JSON.stringify({ id, ...command })}\n`);
      });
    },
    async waitEvent(match, what, timeoutMs = 15_000) {
      await waitFor(() => events.some(match), what, timeoutMs);
      return events.find(match)!;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGCONT");
        child.kill("SIGKILL");
      }
      await exited;
    },
  };
  await node.waitEvent((line) => line.event === "ready", "the node process to register", 20_000);
  return node;
}

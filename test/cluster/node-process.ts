/**
 * Both ends of a node process's line protocol: `spawnNode` in the test, `startChildNode`
 * in the child (node-child.ts, wake-node-child.ts). The child reads one JSON command per
 * line on stdin (`{ id, cmd, … }`) and prints one JSON line per reply (`{ reply: id, ok,
 * result }` or `{ reply: id, ok: false, code, message }`) and per event (`{ event, … }`).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { Membership, type MembershipOptions } from "../../src/cluster/membership.js";
import { Ownership } from "../../src/cluster/ownership.js";
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

/** A cluster node inside its child process: what every child script starts with. */
export interface ChildNode<O extends MembershipOptions> {
  /** The options the test passed as the first argument. */
  readonly options: O;
  readonly membership: Membership;
  readonly ownership: Ownership;
  /** A PostgreSQL client of the child's own, for the test's tables. */
  readonly sql: postgres.Sql;
  /** Print one JSON line on stdout. */
  print(line: object): void;
  /**
   * Answer each command on stdin with what `run` resolves with (or its error's code and
   * message), then print `ready`: the test's `spawnNode` waits for it.
   */
  serve<C extends { id: number }>(run: (command: C) => Promise<object>): void;
}

/**
 * In a child process: start membership and ownership with the options of `argv[2]`, and
 * print their `serving`, `fenced` and `lost` events.
 */
export async function startChildNode<O extends MembershipOptions>(): Promise<ChildNode<O>> {
  const options = JSON.parse(process.argv[2] ?? "") as O;
  const print = (line: object) => process.stdout.write(`${JSON.stringify(line)}\n`);
  const membership = await Membership.start(options);
  const sql = postgres(options.postgres, { max: 4, onnotice: () => {} });
  const ownership = new Ownership(options, membership);
  membership.on("serving", () => print({ event: "serving" }));
  membership.on("fenced", ({ reason }) => print({ event: "fenced", reason }));
  ownership.on("lost", (lost) => print({ event: "lost", ...lost }));
  return {
    options,
    membership,
    ownership,
    sql,
    print,
    serve(run) {
      createInterface({ input: process.stdin }).on("line", (line) => {
        const command = JSON.parse(line) as Parameters<typeof run>[0];
        run(command).then(
          (result) => print({ reply: command.id, ok: true, result }),
          (error: { code?: string; message?: string }) =>
            print({ reply: command.id, ok: false, code: error.code, message: error.message }),
        );
      });
      print({ event: "ready", nodeId: membership.nodeId });
    },
  };
}

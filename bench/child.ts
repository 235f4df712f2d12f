/**
 * Child processes for the run: each server and the load generator get their own core
 * (`taskset`, when the machine has it; a thread pool inherits the pin, so WebCrypto work
 * stays on the same core) and the highest open-file limit the machine allows.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

/** Repository root: children resolve `tsx` and the sources from here. */
export const ROOT = fileURLToPath(new URL("..", import.meta.url));

let tasksetChecked: boolean | undefined;
/** Whether processes can be pinned to a core on this machine. */
export function canPin(): boolean {
  tasksetChecked ??= spawnSync("taskset", ["-c", "0", "true"]).status === 0;
  return tasksetChecked;
}

/** The open-file limit children get (the hard limit may be below the 65,536 asked for). */
export function fileLimit(): number {
  const out = spawnSync("bash", [
    "-c",
    'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; ulimit -n',
  ]);
  return Number(out.stdout?.toString().trim()) || 0;
}

function quote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

export interface ChildOptions {
  /** Core to pin to. */
  cpu: number;
  /** Extra `node` flags, e.g. `--expose-gc` or `--cpu-prof`. */
  nodeArgs?: string[];
  env?: Record<string, string>;
}

/** Start `node --import tsx <script>` with an IPC channel, pinned and with a raised fd limit. */
export function startChild(script: string, options: ChildOptions): ChildProcess {
  const node = [process.execPath, ...(options.nodeArgs ?? []), "--import", "tsx", script];
  const shell = `ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec ${node.map(quote).join(" ")}`;
  const argv = canPin()
    ? ["taskset", "-c", String(options.cpu), "bash", "-c", shell]
    : ["bash", "-c", shell];
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: ROOT,
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    env: { ...process.env, ...options.env },
  });
  return child;
}

/** Resolve with the first IPC message `accept` returns a value for. */
export function nextMessage<T>(
  child: ChildProcess,
  accept: (message: unknown) => T | undefined,
  timeoutMs: number,
  what: string,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: unknown) => {
      const value = accept(message);
      if (value === undefined) return;
      cleanup();
      resolve(value);
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`${what}: process exited (${code}) before answering`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${what}: no answer in ${timeoutMs} ms`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      child.off("message", onMessage);
      child.off("exit", onExit);
    };
    child.on("message", onMessage);
    child.once("exit", onExit);
  });
}

/** Ask a child to leave, then make sure it has. */
export async function stopChild(child: ChildProcess, farewell?: unknown): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  if (farewell !== undefined && child.connected) child.send(farewell as object);
  else if (child.connected) child.disconnect();
  const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
}

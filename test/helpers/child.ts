import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const SCRIPT = fileURLToPath(new URL("../fixtures/counter-server.ts", import.meta.url));

/** A Counter server in its own process (see fixtures/counter-server.ts). */
export interface ChildServer {
  readonly child: ChildProcess;
  readonly port: number;
  /** Resolves with the exit code, or the signal that ended the process. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Start the Counter server on `dataDir` in a child process; resolves once it listens. */
export function spawnCounterServer(dataDir: string, timeoutMs = 15_000): Promise<ChildServer> {
  return spawnServer(SCRIPT, dataDir, timeoutMs);
}

/**
 * Run `script` (a server that prints `{"port":N}` once it listens) on `dataDir` in a child
 * process; resolves once it listens.
 */
export function spawnServer(
  script: string,
  dataDir: string,
  timeoutMs = 15_000,
): Promise<ChildServer> {
  const child = spawn(process.execPath, ["--import", "tsx", script, dataDir], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error("the child server did not start"));
    }, timeoutMs);
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`the child server exited before listening: ${signal ?? code}`));
    });
    let buffered = "";
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (chunk: string) => {
      buffered += chunk;
      const line = buffered.split("\n")[0];
      if (!buffered.includes("\n") || line === undefined) return;
      clearTimeout(timer);
      const { port } = JSON.parse(line) as { port: number };
      resolve({ child, port, exited });
    });
  });
}

/** Kill the child with SIGKILL if it is still running (cleanup). */
export async function killChild(server: ChildServer | undefined): Promise<void> {
  if (server === undefined) return;
  const { child } = server;
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await server.exited;
}

import { type ChildProcess, spawn } from "node:child_process";
import { createInterface, type Interface } from "node:readline";
import { fileURLToPath } from "node:url";

const COUNTER_SCRIPT = fileURLToPath(new URL("../fixtures/counter-server.ts", import.meta.url));
const AUTH_SCRIPT = fileURLToPath(new URL("./auth-server.ts", import.meta.url));

/** A Counter server in its own process (see fixtures/counter-server.ts). */
export interface ChildServer {
  readonly child: ChildProcess;
  readonly port: number;
  /** Resolves with the exit code, or the signal that ended the process. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** A Counter server with token auth in its own process (see auth-server.ts). */
export interface AuthChildServer extends ChildServer {
  /** Revoke in the child; resolves with the number of connections it closed. */
  revoke(target: { sub?: string; jti?: string }): Promise<number>;
}

/** Start the Counter server on `dataDir` in a child process; resolves once it listens. */
export async function spawnCounterServer(
  dataDir: string,
  timeoutMs = 15_000,
): Promise<ChildServer> {
  return spawnServer(COUNTER_SCRIPT, dataDir, timeoutMs);
}

/**
 * Run `script` (a server that prints `{"port":N}` once it listens) on `dataDir` in a child
 * process; resolves once it listens.
 */
export async function spawnServer(
  script: string,
  dataDir: string,
  timeoutMs = 15_000,
): Promise<ChildServer> {
  const { server } = await spawnScript(script, dataDir, {}, timeoutMs);
  return server;
}

/** Start the authenticated Counter server (HS256 `secret`, single-use tickets) on `dataDir`. */
export async function spawnAuthServer(
  dataDir: string,
  secret: string,
  timeoutMs = 15_000,
): Promise<AuthChildServer> {
  const { server, lines } = await spawnScript(
    AUTH_SCRIPT,
    dataDir,
    { OUTPOST_TEST_SECRET: secret },
    timeoutMs,
  );
  return {
    ...server,
    revoke(target) {
      return new Promise((resolve, reject) => {
        lines.once("line", (line: string) =>
          resolve((JSON.parse(line) as { revoked: number }).revoked),
        );
        server.exited.then(() => reject(new Error("the child server exited")));
        server.child.stdin!.write(`${JSON.stringify({ revoke: target })}\n`);
      });
    },
  };
}

/** Spawn `script <dataDir>`; resolves once it printed its `{"port":N}` line. */
function spawnScript(
  script: string,
  dataDir: string,
  env: Record<string, string>,
  timeoutMs: number,
): Promise<{ server: ChildServer; lines: Interface }> {
  const child = spawn(process.execPath, ["--import", "tsx", script, dataDir], {
    stdio: ["pipe", "pipe", "inherit"],
    env: { ...process.env, ...env },
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const lines = createInterface({ input: child.stdout! });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error("the child server did not start"));
    }, timeoutMs);
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`the child server exited before listening: ${signal ?? code}`));
    });
    lines.once("line", (line: string) => {
      clearTimeout(timer);
      const { port } = JSON.parse(line) as { port: number };
      resolve({ server: { child, port, exited }, lines });
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

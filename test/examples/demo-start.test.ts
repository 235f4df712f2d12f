import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { tempDir } from "../helpers/server.js";

const ROOT = join(import.meta.dirname, "..", "..");
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/** `npm start` without the Vite build; resolves with its exit code and everything it printed. */
function startDemo(args: string[]): Promise<{ code: number | null; output: string }> {
  const data = tempDir("outpost-demo-start-");
  cleanups.push(() => data.remove());
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      "examples/demo/start.ts",
      "--skip-build",
      "--data-dir",
      join(data.dir, "agents"),
      "--dist-dir",
      join(data.dir, "dist"),
      ...args,
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  cleanups.push(() => child.exitCode === null && child.kill("SIGKILL"));
  let output = "";
  child.stdout.on("data", (chunk) => {
    output += chunk;
  });
  child.stderr.on("data", (chunk) => {
    output += chunk;
  });
  return new Promise((resolve) => child.on("exit", (code) => resolve({ code, output })));
}

async function takenPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return (server.address() as { port: number }).port;
}

describe("npm start (the demo)", () => {
  it("says in one line which port is in use and the flag that changes it, with no stack", async () => {
    const app = await takenPort();
    const appTaken = await startDemo(["--app-port", String(app), "--agent-port", "0"]);
    expect(appTaken.code).toBe(1);
    expect(appTaken.output.trim().split("\n")).toEqual([
      `the demo could not start: port ${app} is in use; pick another with npm start -- --app-port <n>`,
    ]);

    const agent = await takenPort();
    const agentTaken = await startDemo(["--app-port", "0", "--agent-port", String(agent)]);
    expect(agentTaken.code).toBe(1);
    expect(agentTaken.output.trim()).toBe(
      `the demo could not start: port ${agent} is in use; pick another with npm start -- --agent-port <n>`,
    );
  }, 60_000);
});

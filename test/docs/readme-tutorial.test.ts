import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { installEnv, type PackedOutpost, packOutpost, runBlock } from "../helpers/packed.js";
import { tempDir } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";
import { type TutorialStep, tutorialSteps } from "./tutorial-steps.js";

const ROOT = join(import.meta.dirname, "..", "..");
const README_PORT = "8787";

/** A free port on 127.0.0.1, found by binding port 0 (the README's 8787 may be in use). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A long-running block in its own process group, so `kill -9` reaches npx and the server. */
function startBlock(code: string, cwd: string, env: NodeJS.ProcessEnv) {
  const child = spawn("bash", ["-euo", "pipefail", "-c", code], {
    cwd,
    env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (chunk) => {
    output += chunk;
  });
  child.stderr!.on("data", (chunk) => {
    output += chunk;
  });
  return { child, output: () => output };
}

function groupAlive(child: ChildProcess): boolean {
  try {
    process.kill(-child.pid!, 0);
    return true;
  } catch {
    return false;
  }
}

async function killNine(child: ChildProcess): Promise<void> {
  if (groupAlive(child)) process.kill(-child.pid!, "SIGKILL");
  await waitFor(() => !groupAlive(child), "the killed server's processes to be gone", 15_000);
}

describe("the README's tutorial, run as written in a fresh folder", () => {
  const steps = tutorialSteps(readFileSync(join(ROOT, "README.md"), "utf8"));
  let packed: PackedOutpost;

  // One tarball for every variant; dist/ is already built by `npm test`.
  beforeAll(async () => {
    packed = await packOutpost();
  }, 120_000);

  it("has the steps a reader follows: install, agent, secret, serve, client", () => {
    expect(steps.map((step) => (step.kind === "file" ? `file ${step.name}` : step.kind))).toEqual([
      "run",
      "file agents.ts",
      "run",
      "serve",
      "file client.mjs",
      "client",
    ]);
    expect(steps[0]!.code).toContain('npm install "$OUTPOST_TGZ" ws');
  });

  for (const type of ["commonjs", "module"] as const) {
    // The two folders are independent: run them side by side.
    it.skipIf(!existsSync(join(ROOT, "dist", "index.js"))).concurrent(
      `works from an empty folder with "type": "${type}": install, agent, outpost dev, token, client, kill -9, messages kept`,
      async () => {
        const folder = tempDir(`outpost-tutorial-${type}-`);
        const servers: ChildProcess[] = [];
        try {
          const port = String(await freePort());
          const env = installEnv(packed);
          const inFolder = (step: TutorialStep) => step.code.replaceAll(README_PORT, port);
          const serve = async () => {
            const server = startBlock(inFolder(serveStep), folder.dir, env);
            servers.push(server.child);
            await waitFor(
              () =>
                server.output().includes(`Outpost dev server at http://127.0.0.1:${port}`) ||
                server.child.exitCode !== null,
              "outpost dev to listen",
              60_000,
            );
            if (server.child.exitCode !== null) {
              throw new Error(`outpost dev exited:\n${server.output()}`);
            }
            return server;
          };
          const serveStep = steps.find((step) => step.kind === "serve")!;
          const clientStep = steps.find((step) => step.kind === "client")!;

          let first: { output: () => string } | undefined;
          for (const [index, step] of steps.entries()) {
            if (step.kind === "file") writeFileSync(join(folder.dir, step.name), inFolder(step));
            else if (step.kind === "serve") first = await serve();
            else {
              const output = await runBlock(inFolder(step), folder.dir, env);
              if (step.kind === "client") expect(output).toContain("alice: hello");
              // A newcomer's install is quiet on the supported Node versions.
              expect(output).not.toContain("EBADENGINE");
            }
            if (index === 0 && type === "module") {
              await runBlock("npm pkg set type=module", folder.dir, env);
            }
          }
          const pkg = JSON.parse(readFileSync(join(folder.dir, "package.json"), "utf8"));
          expect(pkg.type).toBe(type);
          expect(first!.output()).toContain("auth: on");

          // kill -9 the server, start it again, post again: both messages are there.
          await killNine(servers.pop()!);
          await serve();
          const again = await runBlock(inFolder(clientStep), folder.dir, env);
          expect(again.match(/^alice: hello$/gm)).toHaveLength(2);
        } finally {
          for (const child of servers.splice(0)) await killNine(child);
          folder.remove();
        }
      },
      240_000,
    );
  }
});

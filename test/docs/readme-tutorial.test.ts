import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tempDir } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";
import { type TutorialStep, tutorialSteps } from "./tutorial-steps.js";

const ROOT = join(import.meta.dirname, "..", "..");
const README_PORT = "8787";
const exec = promisify(execFile);

/** A free port on 127.0.0.1, found by binding port 0 (the README's 8787 may be in use). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * The environment of a fresh terminal: none of the variables `npm test` sets, and no
 * `node_modules/.bin` of this project on PATH, so `npx outpost` can only find the install.
 */
function freshShellEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(npm_|INIT_CWD$|JWT_SECRET$|TOKEN$|VITEST|NODE_OPTIONS$)/i.test(key)) continue;
    env[key] = value;
  }
  env.PATH = (process.env.PATH ?? "")
    .split(delimiter)
    .filter((entry) => !entry.includes("node_modules"))
    .join(delimiter);
  return { ...env, ...extra };
}

/** One shell block; resolves with its output, rejects with it when the block fails. */
async function runBlock(code: string, cwd: string, env: NodeJS.ProcessEnv): Promise<string> {
  try {
    const { stdout, stderr } = await exec("bash", ["-euo", "pipefail", "-c", code], {
      cwd,
      env,
      maxBuffer: 16 * 1024 * 1024,
    });
    return stdout + stderr;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`tutorial block failed:\n${code}\n--- output ---\n${stdout}${stderr}`);
  }
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
  let packDir: ReturnType<typeof tempDir>;
  let tarball: string;
  let prebuilds: string;

  beforeAll(async () => {
    packDir = tempDir("outpost-pack-");
    // One tarball for every variant; dist/ is already built by `npm test`.
    const { stdout } = await exec(
      "npm",
      ["pack", "--ignore-scripts", "--silent", "--pack-destination", packDir.dir],
      { cwd: ROOT },
    );
    tarball = join(packDir.dir, stdout.trim().split("\n").pop()!);

    // better-sqlite3 would compile SQLite again in each fresh folder (about 50 s here). The
    // addon this project already built is offered as a local prebuild of the same version
    // and ABI instead; the install is otherwise the README's.
    prebuilds = join(packDir.dir, "prebuilds");
    mkdirSync(prebuilds);
    const sqliteDir = join(ROOT, "node_modules", "better-sqlite3");
    const { version } = JSON.parse(readFileSync(join(sqliteDir, "package.json"), "utf8"));
    const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
    await exec("tar", [
      "czf",
      join(prebuilds, name),
      "-C",
      sqliteDir,
      "build/Release/better_sqlite3.node",
    ]);
  }, 120_000);

  afterAll(() => packDir?.remove());

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
          const env = freshShellEnv({
            OUTPOST_TGZ: tarball,
            npm_config_prefer_offline: "true",
            npm_config_audit: "false",
            npm_config_fund: "false",
            npm_config_update_notifier: "false",
            npm_config_better_sqlite3_local_prebuilds: prebuilds,
          });
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

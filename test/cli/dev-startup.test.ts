import type { ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createKeySet, issueToken } from "../../src/auth/index.js";
import { unimportedHelpers, unsetEnvironmentVariables } from "../../src/cli/dev-auth.js";
import { type CliRun, runCli } from "../helpers/cli.js";
import { tempDir } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";
import { connect, refused } from "../helpers/ws-client.js";

const ROOT = join(import.meta.dirname, "..", "..");
const built = existsSync(join(ROOT, "dist", "cli", "main.js"));
const SECRET = "dev-startup-secret-0123456789abcdef-xyz";

/** A user's folder: Outpost under node_modules and one `agents.ts` with the given `auth` line. */
function userProject(authLine: string, type: "commonjs" | "module" | undefined = undefined) {
  const project = tempDir("outpost-dev-startup-");
  mkdirSync(join(project.dir, "node_modules"));
  symlinkSync(ROOT, join(project.dir, "node_modules", "outpost"));
  writeFileSync(
    join(project.dir, "package.json"),
    JSON.stringify({ name: "user-app", ...(type !== undefined && { type }) }),
  );
  writeFileSync(
    join(project.dir, "agents.ts"),
    [
      'import { Agent, callable } from "outpost";',
      'import { createKeySet, loadKeySet, tokenAuth } from "outpost/auth";',
      "export class Room extends Agent {",
      "  @callable()",
      "  ping() { return 'pong'; }",
      "  @callable()",
      "  boom() { throw new Error('kaboom'); }", // line 7
      "}",
      authLine,
    ].join("\n"),
  );
  return project;
}

/** The environment without colour switches, and with `extra` set (or removed when undefined). */
function env(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const result: NodeJS.ProcessEnv = { ...process.env };
  delete result.FORCE_COLOR;
  delete result.NO_COLOR;
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) delete result[key];
    else result[key] = value;
  }
  return result;
}

const children: ChildProcess[] = [];
const projects: { remove(): void }[] = [];
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
  for (const project of projects.splice(0)) project.remove();
});

function dev(
  project: { dir: string },
  extraEnv: Record<string, string | undefined>,
  args: string[] = [],
): CliRun {
  const run = runCli(["dev", "agents.ts", "--port", "0", "--data-dir", "data", ...args], {
    cwd: project.dir,
    env: env(extraEnv),
  });
  children.push(run.child);
  return run;
}

async function listening(run: CliRun): Promise<number> {
  await waitFor(
    () => run.output().includes("Outpost dev server at") || run.child.exitCode !== null,
    "outpost dev to start",
    20_000,
  );
  const match = /Outpost dev server at http:\/\/127\.0\.0\.1:(\d+)/.exec(run.output());
  if (match === null) throw new Error(`outpost dev did not start:\n${run.output()}`);
  return Number(match[1]);
}

describe.skipIf(!built)("outpost dev at startup", () => {
  const secretAuth =
    "export const auth = tokenAuth({ keys: createKeySet({ secret: process.env.JWT_SECRET! }) });";

  it("exits 1 with one line naming the cause when JWT_SECRET is not set, instead of serving 1011s", async () => {
    const project = userProject(secretAuth);
    projects.push(project);
    const run = dev(project, { JWT_SECRET: undefined });
    expect(await run.exited).toBe(1);
    const lines = run.output().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^outpost dev: JWT_SECRET is not set, so the exported auth cannot be built \(/,
    );
    expect(run.output()).not.toContain("auth: on");
  }, 30_000);

  it("exits 1 with one line when the secret is too short", async () => {
    const project = userProject(secretAuth);
    projects.push(project);
    const run = dev(project, { JWT_SECRET: "short" });
    expect(await run.exited).toBe(1);
    expect(run.output().trim().split("\n")).toEqual([
      expect.stringMatching(
        /^outpost dev: the exported auth cannot be built: a shared secret must be at least 32 bytes/,
      ),
    ]);
  }, 30_000);

  it("exits 1 with one line when the key file is missing", async () => {
    const project = userProject(
      'export const auth = tokenAuth({ keys: loadKeySet("outpost-keys.json") });',
    );
    projects.push(project);
    const run = dev(project, {});
    expect(await run.exited).toBe(1);
    expect(run.output().trim().split("\n")).toEqual([
      expect.stringMatching(
        /^outpost dev: the exported auth cannot be built: cannot read key file .*outpost-keys\.json/,
      ),
    ]);
  }, 30_000);

  it("says in one line which port is in use and the flag to change it", async () => {
    const project = userProject(secretAuth);
    projects.push(project);
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const { port } = taken.address() as { port: number };
    try {
      const run = runCli(["dev", "agents.ts", "--port", String(port), "--data-dir", "data"], {
        cwd: project.dir,
        env: env({ JWT_SECRET: SECRET }),
      });
      children.push(run.child);
      expect(await run.exited).toBe(1);
      expect(run.output().trim().split("\n")).toEqual([
        `outpost dev: port ${port} on 127.0.0.1 is in use; pick another with --port <n>`,
      ]);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  }, 30_000);

  it("relaxes the failed-attempt limit for this machine's clients, and says so in the log", async () => {
    const project = userProject(secretAuth);
    projects.push(project);
    const run = dev(project, { JWT_SECRET: SECRET });
    const port = await listening(run);
    await waitFor(
      () => run.output().includes("failed-attempt limit relaxed"),
      "the relaxed-limit log line",
      10_000,
    );

    // 30 typos: past the default limit of 20 a minute, which would close 4008 from here on.
    for (let i = 0; i < 30; i++) {
      const closed = await refused(`ws://127.0.0.1:${port}/agents/room/main?token=typo${i}`);
      expect(closed.code).toBe(4001);
    }
    const keys = await createKeySet({ secret: SECRET });
    const token = await issueToken(keys, { sub: "dev", agent: "room", name: "main" });
    const client = await connect(`ws://127.0.0.1:${port}/agents/room/main?token=${token}`);
    expect(await client.rpc("ping")).toBe("pong");
  }, 60_000);

  it("warns at startup when the module calls verifyJWT without importing it", async () => {
    const project = userProject(
      `${secretAuth}\nexport async function check(t: string) { try { return await verifyJWT(t, "s"); } catch { return false; } }`,
    );
    projects.push(project);
    const run = dev(project, { JWT_SECRET: SECRET });
    await listening(run);
    expect(run.output()).toContain(
      'warning: agents.ts calls verifyJWT but never imports it; every call throws. Use connection.auth (already verified), or import { verifyJWT } from "outpost/auth"',
    );
  }, 30_000);

  it("writes readable logs without colour codes when stdout is not a terminal", async () => {
    const project = userProject(secretAuth);
    projects.push(project);
    const run = dev(project, { JWT_SECRET: SECRET });
    await listening(run);
    await waitFor(() => run.output().includes("listening"), "the listening log line", 10_000);
    expect(run.output()).toMatch(/INFO.*listening/);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the escape is what is checked
    expect(run.output()).not.toMatch(/\u001b\[/);
  }, 30_000);
});

describe.skipIf(!built)("stack traces from agent code", () => {
  for (const type of [undefined, "module"] as const) {
    it(`point at the user's file and line (${type ?? "CommonJS, no type"})`, async () => {
      const project = userProject("", type);
      projects.push(project);
      const run = dev(project, {});
      const port = await listening(run);
      const client = await connect(`ws://127.0.0.1:${port}/agents/room/main`);
      await expect(client.rpc("boom")).rejects.toThrow("kaboom");
      await waitFor(() => run.output().includes("kaboom"), "the logged error", 10_000);
      expect(run.output()).toContain(`${join(project.dir, "agents.ts")}:7:`);
      expect(run.output()).not.toContain("data:text/javascript");
    }, 30_000);
  }
});

describe("unimportedHelpers", () => {
  it("names verifyJWT when it is called but neither imported nor declared", () => {
    expect(unimportedHelpers("const p = await verifyJWT(token, secret);")).toEqual(["verifyJWT"]);
    expect(
      unimportedHelpers('import { verifyJWT } from "outpost/auth";\nawait verifyJWT(t, s);'),
    ).toEqual([]);
    expect(unimportedHelpers("async function verifyJWT(t, s) {}\nawait verifyJWT(t, s);")).toEqual(
      [],
    );
    expect(unimportedHelpers("connection.auth.sub")).toEqual([]);
  });
});

describe("unsetEnvironmentVariables", () => {
  it("names the process.env references in the source that are unset or empty", () => {
    const source =
      'process.env.JWT_SECRET!; process.env["API_KEY"]; process.env.HOME; process.env.EMPTY';
    expect(unsetEnvironmentVariables(source, { HOME: "/root", EMPTY: "" })).toEqual([
      "JWT_SECRET",
      "API_KEY",
      "EMPTY",
    ]);
  });
});

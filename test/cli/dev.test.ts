import type { ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createKeySet, issueToken } from "../../src/auth/index.js";
import { runCli } from "../helpers/cli.js";
import { tempDir } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";
import { connect, refused } from "../helpers/ws-client.js";

const ROOT = join(import.meta.dirname, "..", "..");

const run = (args: string[]) => runCli(args);

describe("outpost dev", () => {
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const child of children.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
  });

  it.skipIf(!existsSync(join(ROOT, "dist", "cli", "main.js")))(
    "serves every Agent a TypeScript module exports, with its auth, and stops on SIGTERM",
    async () => {
      const data = tempDir();
      const dev = run([
        "dev",
        "test/fixtures/dev-module.ts",
        "--port",
        "0",
        "--data-dir",
        data.dir,
        "--json",
      ]);
      children.push(dev.child);
      await waitFor(
        () => /http:\/\/127\.0\.0\.1:\d+\n/.test(dev.output()),
        "the dev server URL",
        15_000,
      );
      const port = Number(/127\.0\.0\.1:(\d+)/.exec(dev.output())![1]);
      expect(dev.output()).toContain("TallyBoard → ws://127.0.0.1:");
      expect(dev.output()).not.toContain("notAnAgent");

      // The module's `auth` export guards the agents.
      const closed = await refused(`ws://127.0.0.1:${port}/agents/tally-board/main`);
      expect(closed.code).toBe(4001);

      const keys = await createKeySet({ secret: "dev-module-secret-0123456789abcdef-xyz" });
      const token = await issueToken(keys, { sub: "dev", agent: "tally-board", name: "main" });
      const client = await connect(`ws://127.0.0.1:${port}/agents/tally-board/main?token=${token}`);
      expect(await client.rpc("add", [5])).toBe(5);
      expect(existsSync(join(data.dir, "tally-board", "main.sqlite"))).toBe(true);
      // The module's `route` export: its own address reaches the same instance.
      expect(dev.output()).toContain("route → your own addresses");
      const routed = await connect(`ws://127.0.0.1:${port}/board?token=${token}`);
      expect(await routed.rpc("add", [1])).toBe(6);
      await routed.close();

      dev.child.kill("SIGTERM");
      expect((await client.closed).code).toBe(1001);
      expect(await dev.exited).toBe(0);
      data.remove();
    },
    30_000,
  );

  it.skipIf(!existsSync(join(ROOT, "dist", "cli", "main.js")))(
    "loads a TypeScript module from a project that is not ESM, callables and getCurrentAgent included",
    async () => {
      // A user's project: no "type": "module", Outpost installed under node_modules.
      const project = tempDir();
      mkdirSync(join(project.dir, "node_modules"));
      symlinkSync(ROOT, join(project.dir, "node_modules", "outpost"));
      writeFileSync(join(project.dir, "package.json"), '{ "name": "user-app" }');
      writeFileSync(
        join(project.dir, "agents.ts"),
        [
          'import { Agent, callable, getCurrentAgent } from "outpost";',
          "export class Greeter extends Agent {",
          "  @callable()",
          "  hello() { return getCurrentAgent().connection ? 'hello caller' : 'hello nobody'; }",
          "}",
        ].join("\n"),
      );
      const dev = run([
        "dev",
        join(project.dir, "agents.ts"),
        "--port",
        "0",
        "--data-dir",
        join(project.dir, "data"),
      ]);
      children.push(dev.child);
      await waitFor(
        () => /http:\/\/127\.0\.0\.1:\d+\n/.test(dev.output()),
        "the dev server URL",
        15_000,
      );
      const port = Number(/127\.0\.0\.1:(\d+)/.exec(dev.output())![1]);
      const client = await connect(`ws://127.0.0.1:${port}/agents/greeter/one`);
      expect(await client.rpc("hello")).toBe("hello caller");
      dev.child.kill("SIGTERM");
      expect(await dev.exited).toBe(0);
      project.remove();
    },
    30_000,
  );

  it("explains what it needs when the module is missing or exports no agent", async () => {
    const missing = run(["dev"]);
    expect(await missing.exited).toBe(2);
    expect(missing.output()).toContain("outpost dev needs exactly one module");

    const empty = run(["dev", "test/helpers/wait.ts", "--port", "0"]);
    expect(await empty.exited).toBe(1);
    expect(empty.output()).toContain("exports no Agent subclass");

    const project = tempDir();
    writeFileSync(
      join(project.dir, "agents.mjs"),
      `import { Agent } from ${JSON.stringify(join(ROOT, "dist", "index.js"))};\nexport class A extends Agent {}\nexport const route = "/me";\n`,
    );
    const badRoute = run(["dev", join(project.dir, "agents.mjs"), "--port", "0"]);
    expect(await badRoute.exited).toBe(1);
    expect(badRoute.output()).toContain("exports `route`, but it is not a function");
    project.remove();

    const badPort = run(["dev", "x.ts", "--port", "http"]);
    expect(await badPort.exited).toBe(2);
    expect(badPort.output()).toContain("--port must be a number");
  });
});

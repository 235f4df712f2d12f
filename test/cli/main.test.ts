import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.js";

const ROOT = join(import.meta.dirname, "..", "..");
const { version } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));

describe.skipIf(!existsSync(join(ROOT, "dist", "cli", "main.js")))("outpost", () => {
  it("prints the package version with --version", async () => {
    const run = runCli(["--version"]);
    expect(await run.exited).toBe(0);
    expect(run.output()).toBe(`${version}\n`);
  });
});

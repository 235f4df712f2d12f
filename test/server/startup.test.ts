import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "..", "..");
const DIST = join(ROOT, "dist", "index.js");
const HOOK = join(ROOT, "test", "fixtures", "module-trace.mjs");

/** The packages a fresh `node` resolves while it runs `code`. */
function packagesLoadedBy(code: string): Set<string> {
  const run = spawnSync(process.execPath, ["--import", HOOK, "--input-type=module", "-e", code], {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 30_000,
  });
  expect(run.status, run.stderr).toBe(0);
  return new Set(
    run.stderr
      .split("\n")
      .filter((line) => line.startsWith("resolved "))
      .map((line) => line.slice("resolved ".length)),
  );
}

describe("startup", () => {
  it.skipIf(!existsSync(DIST))(
    "a single node does not load the cluster's PostgreSQL client (it is loaded with `cluster` only)",
    () => {
      const single = packagesLoadedBy(
        `const { serve, Agent } = await import(${JSON.stringify(DIST)});
         const { mkdtempSync, rmSync } = await import("node:fs");
         const dataDir = mkdtempSync((await import("node:os")).tmpdir() + "/outpost-startup-");
         class A extends Agent {}
         const s = await serve({ agents: { A }, port: 0, logger: false, handleSignals: false, dataDir });
         await s.close();
         rmSync(dataDir, { recursive: true, force: true });`,
      );
      // The hook sees the server's own packages, so its silence about postgres means something.
      expect(single.has("ws")).toBe(true);
      expect(single.has("better-sqlite3")).toBe(true);
      expect(single.has("postgres")).toBe(false);
    },
  );
});

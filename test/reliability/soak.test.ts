import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";
import { runSoak } from "./soak-runner.js";

/**
 * The CI-sized soak (scripts/soak.ts runs the full one): authenticated connections doing
 * RPC and state writes for 25 s against a server in a child process. No errors, every
 * acknowledged write present after a restart, and RSS not growing in the second half.
 */
const authModule = fileURLToPath(new URL("./soak-auth.ts", import.meta.url));

it("soak: 1,000 authenticated connections for 25 s lose nothing and do not grow", async () => {
  const lines: string[] = [];
  const report = await runSoak({
    connections: Number(process.env.SOAK_CONNECTIONS ?? 1_000),
    seconds: Number(process.env.SOAK_SECONDS ?? 25),
    perInstance: 10,
    rate: 2,
    stateEvery: 5,
    sampleMs: 2_000,
    ...(existsSync(authModule) && { authModule }),
    log: (line) => lines.push(line),
  });
  console.log(
    `${lines.join("\n")}\n${JSON.stringify({ ...report, samples: report.samples.length })}`,
  );
  expect(report.errors).toEqual({ rpc: 0, state: 0, unexpectedClose: 0, connect: 0 });
  expect(report.verify.missingWrites).toBe(0);
  expect(report.verify.extraWrites).toBe(0);
  expect(report.verify.keys).toBe(report.connections);
  expect(report.rpcAcked).toBeGreaterThan(report.connections * report.seconds);
  expect(report.rssLateMiB).toBeLessThan(report.rssEarlyMiB * 1.2 + 32);
}, 40_000);

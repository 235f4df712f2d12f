import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type BenchKeys, type Contender, stormRoom } from "../../bench/config.js";
import { Storm } from "../../bench/load/storm.js";
import { stormChart } from "../../bench/report.js";
import { ServerProcess } from "../../bench/servers/index.js";
import { createBenchKeys, createSigner } from "../../bench/tokens.js";
import { resolveReconnectOptions } from "../../src/client/reconnect.js";

const CLIENTS = 120;
const ROOMS = 6;

async function stormTokens(keys: BenchKeys): Promise<string[]> {
  const signer = await createSigner(keys, "EdDSA");
  return Promise.all(
    Array.from({ length: CLIENTS }, (_, i) => signer.sign(`user-${i}`, stormRoom(i % ROOMS))),
  );
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Open the storm on a fresh server, seed every room, arm; the server and its data dir. */
async function stormOn(contender: Contender) {
  const keys = await createBenchKeys();
  const dataDir = mkdtempSync(join(tmpdir(), "outpost-storm-test-"));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const options = { keys, algorithm: "EdDSA" as const, failureLimit: true, dataDir };
  const first = await ServerProcess.start(contender, options);
  cleanups.push(() => first.kill());
  const storm = new Storm();
  cleanups.push(() => storm.close());
  const opened = await storm.open(
    { contender, port: first.port },
    await stormTokens(keys),
    ROOMS,
    50,
  );
  expect(opened).toMatchObject({ opened: CLIENTS, failed: 0 });
  const expected = await storm.seed(ROOMS);
  await storm.arm();
  return { keys, first, storm, expected, options };
}

describe("reconnect storm", () => {
  it("every client of a killed Outpost is back with its room's state after the restart, none refused, none sooner than the client's shortest delay", {
    timeout: 120_000,
  }, async () => {
    const { first, storm, expected, options } = await stormOn("outpost");
    // Rooms got states of their own (1, 2 or 3 bumps), so a reset one would be noticed.
    expect(expected).toEqual([1, 2, 3, 1, 2, 3]);
    const port = first.port;
    await first.kill();
    const second = await ServerProcess.start("outpost", { ...options, port });
    cleanups.push(() => second.kill());
    const result = await storm.wait(60_000);
    expect(result).toMatchObject({ clients: CLIENTS, back: CLIENTS, stale: 0, refusals: 0 });
    expect(result.backAt).toHaveLength(CLIENTS);
    // The first retry after a healthy connection waits backoffDelay(1): at least
    // minDelay × (1 − jitter) after the drop, for every client.
    const retry = resolveReconnectOptions();
    const shortest = retry.minDelay * (1 - retry.jitter);
    expect(result.backAt[0]! - result.firstCloseAt).toBeGreaterThanOrEqual(shortest - 5);
  });

  it("a client that comes back to a server which lost its room's state is not counted as back", {
    timeout: 120_000,
  }, async () => {
    const { keys, first, storm } = await stormOn("bare");
    const port = first.port;
    await first.kill();
    // Same port, a fresh data directory: the rooms' states are gone.
    const freshDir = mkdtempSync(join(tmpdir(), "outpost-storm-test-"));
    cleanups.push(() => rmSync(freshDir, { recursive: true, force: true }));
    const second = await ServerProcess.start("bare", {
      keys,
      algorithm: "EdDSA",
      port,
      dataDir: freshDir,
    });
    cleanups.push(() => second.kill());
    const result = await storm.wait(8_000);
    expect(result.back).toBe(0);
    expect(result.stale).toBe(CLIENTS);
    expect(result.refusals).toBe(0);
  });

  it("draws clients back over time as a well-formed SVG with a mark per restart", () => {
    const svg = stormChart(
      {
        outpost: { clients: 100, step: 50, listeningMs: 400, curve: [0, 900, 1800] },
        bare: { clients: 100, step: 50, listeningMs: 300, curve: [0, 800, 1500] },
      },
      "storm <test>",
    );
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
    expect(svg).toContain("storm &lt;test&gt;");
    expect(svg.match(/<polyline /g)).toHaveLength(2);
    expect(svg.match(/stroke-dasharray="4 4"/g)).toHaveLength(2);
    expect(svg).not.toContain("NaN");
  });
});

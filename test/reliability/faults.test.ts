import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, RawClient, refused } from "../helpers/ws-client.js";
import { Crashy, Flaky, Ledger } from "./fixtures.js";
import { sleep, startChildServer, startServer, tempDir, wsUrl } from "./helpers.js";

/**
 * Faults: the process killed mid-write, a full or unusable disk, agents that fail to
 * start or throw from every hook. Acknowledged writes survive, errors reach the caller as
 * error frames or close codes, and nothing spreads to other agents.
 */

/** Mount a tmpfs of `size` at `dir`; false where this is not allowed (not root, no caps). */
function mountTmpfs(dir: string, size: string): boolean {
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function remount(dir: string, mode: "ro" | "rw"): void {
  execFileSync("mount", ["-o", `remount,${mode}`, dir], { stdio: "ignore" });
}

function unmount(dir: string): void {
  try {
    execFileSync("umount", [dir], { stdio: "ignore" });
  } catch {
    execFileSync("umount", ["-l", dir], { stdio: "ignore" });
  }
}

const canMount = (() => {
  const probe = tempDir("outpost-mount-probe-");
  const ok = mountTmpfs(probe.dir, "64k");
  if (ok) unmount(probe.dir);
  probe.remove();
  return ok;
})();

describe("SIGKILL during a write storm", () => {
  it("keeps every acknowledged write across repeated kills and restarts", async () => {
    const data = tempDir();
    const CLIENTS = 24;
    const INSTANCES = 4;
    const WINDOW = 4;
    /** Highest count each key's writer was told, and how many calls it had unanswered. */
    const acked = new Map<string, number>();
    let totalAcked = 0;
    const rounds: string[] = [];
    try {
      for (let round = 0; round < 3; round++) {
        const server = await startChildServer({ dataDir: data.dir });
        const clients = await Promise.all(
          Array.from({ length: CLIENTS }, (_, i) =>
            connect(wsUrl(server, `/agents/ledger/storm-${i % INSTANCES}`)),
          ),
        );
        let stop = false;
        const storms = clients.map(async (client, i) => {
          const key = `writer-${i}`;
          // A window of calls in flight per connection: the kill lands mid-write.
          const lanes = Array.from({ length: WINDOW }, async () => {
            while (!stop) {
              let n: number;
              try {
                n = await client.rpc<number>("add", [key], 10_000);
              } catch {
                return;
              }
              totalAcked++;
              if (n > (acked.get(key) ?? 0)) acked.set(key, n);
            }
          });
          await Promise.all(lanes);
        });
        await sleep(700 + round * 300);
        const before = totalAcked;
        await server.kill("SIGKILL");
        stop = true;
        await Promise.all(storms);
        rounds.push(`round ${round}: ${before} writes acknowledged before SIGKILL`);
        for (const client of clients) client.terminate();
      }

      const server = await startChildServer({ dataDir: data.dir });
      try {
        let lost = 0;
        let unacknowledgedButStored = 0;
        for (let instance = 0; instance < INSTANCES; instance++) {
          const client = await connect(wsUrl(server, `/agents/ledger/storm-${instance}`));
          expect(await client.rpc("integrity")).toBe("ok");
          const rows = await client.rpc<Array<{ key: string; n: number }>>("dump");
          for (const { key, n } of rows) {
            const told = acked.get(key) ?? 0;
            if (n < told) lost++;
            // Calls in flight at a kill may have committed without an answer.
            unacknowledgedButStored += n - told;
            expect(n - told).toBeLessThanOrEqual(WINDOW * 3);
          }
          await client.close();
        }
        console.log(
          `${rounds.join("; ")}; total acknowledged ${totalAcked}; lost ${lost}; ` +
            `committed but unanswered at the kills: ${unacknowledgedButStored}`,
        );
        expect(lost).toBe(0);
        expect(acked.size).toBe(CLIENTS);
      } finally {
        await server.kill();
      }
    } finally {
      data.remove();
    }
  }, 40_000);
});

describe("disk full", () => {
  it("reports SQLite's 'disk is full' to the caller and keeps earlier writes (page cap)", async () => {
    const data = tempDir();
    try {
      let server = await startServer({ Ledger }, { dataDir: data.dir });
      let client = await connect(wsUrl(server, "/agents/ledger/capped"));
      const other = await connect(wsUrl(server, "/agents/ledger/neighbour"));
      for (let i = 1; i <= 5; i++) expect(await client.rpc("add", ["kept"])).toBe(i);
      await client.rpc("capPages");
      let fills = 0;
      let error: unknown;
      for (let i = 0; i < 100 && error === undefined; i++) {
        const answer = await client.call("fill", [16 * 1024]);
        if (answer.success) fills++;
        else error = answer.error;
      }
      expect(error).toMatch(/disk is full/);
      // The connection, the instance and its neighbours keep working.
      expect(await client.rpc("get", ["kept"])).toBe(5);
      expect(await other.rpc("add", ["n"])).toBe(1);
      await client.close();
      await other.close();
      await server.close();
      server = await startServer({ Ledger }, { dataDir: data.dir });
      client = await connect(wsUrl(server, "/agents/ledger/capped"));
      expect(await client.rpc("integrity")).toBe("ok");
      expect(await client.rpc("get", ["kept"])).toBe(5);
      expect(await client.rpc("blobCount")).toBe(fills);
      await client.close();
      await server.close();
    } finally {
      data.remove();
    }
  });

  it.runIf(canMount)(
    "answers ENOSPC on a real full filesystem, recovers when space returns",
    async () => {
      const data = tempDir();
      const mount = join(data.dir, "disk");
      mkdirSync(mount);
      expect(mountTmpfs(mount, "1m")).toBe(true);
      try {
        // Ballast to delete later, so the test can give space back.
        writeFileSync(join(mount, "ballast"), Buffer.alloc(256 * 1024));
        let server = await startServer({ Ledger }, { dataDir: mount });
        let client = await connect(wsUrl(server, "/agents/ledger/full"));
        for (let i = 1; i <= 5; i++) expect(await client.rpc("add", ["kept"])).toBe(i);
        let fills = 0;
        let error: unknown;
        for (let i = 0; i < 200 && error === undefined; i++) {
          const answer = await client.call("fill", [32 * 1024]);
          if (answer.success) fills++;
          else error = answer.error;
        }
        expect(error).toMatch(/disk is full|disk I\/O error/);
        expect(await client.rpc("get", ["kept"])).toBe(5);
        // A new instance cannot even create its database: it is refused with 1011, not a crash.
        const rejected = await refused(wsUrl(server, "/agents/ledger/new-on-full-disk"));
        console.log(
          `full tmpfs: write error "${error}" after ${fills} blobs; new instance closed ${rejected.code}`,
        );
        expect(rejected).toMatchObject({ code: 1011, received: [] });
        rmSync(join(mount, "ballast"));
        expect(await client.rpc("add", ["kept"])).toBe(6);
        await client.close();
        await server.close();
        server = await startServer({ Ledger }, { dataDir: mount });
        client = await connect(wsUrl(server, "/agents/ledger/full"));
        expect(await client.rpc("integrity")).toBe("ok");
        expect(await client.rpc("get", ["kept"])).toBe(6);
        expect(await client.rpc("blobCount")).toBe(fills);
        await client.close();
        await server.close();
      } finally {
        unmount(mount);
        data.remove();
      }
    },
  );
});

describe("unusable data directory", () => {
  it("closes 1011 while an agent's directory is unusable, then retries once it is fixed", async () => {
    const server = await startServer({ Ledger, Flaky });
    try {
      // A regular file where the agent's directory should be: ENOTDIR, also for root.
      writeFileSync(join(server.dataDir, "flaky"), "not a directory");
      const ledger = await connect(wsUrl(server, "/agents/ledger/fine"));
      for (let i = 0; i < 2; i++) {
        const rejected = await refused(wsUrl(server, "/agents/flaky/blocked"));
        expect(rejected).toMatchObject({
          code: 1011,
          reason: "agent failed to start",
          received: [],
        });
      }
      expect(await ledger.rpc("add", ["x"])).toBe(1);
      rmSync(join(server.dataDir, "flaky"));
      const flaky = await connect(wsUrl(server, "/agents/flaky/blocked"));
      expect(await flaky.rpc("ping")).toBe("pong");
      await flaky.close();
      await ledger.close();
    } finally {
      await server.stop();
    }
  });

  it.runIf(canMount)("read-only filesystem: clear error, data left intact", async () => {
    const data = tempDir();
    // The agent's own directory is a tmpfs that is later remounted read-only.
    const agentDir = join(data.dir, "ledger");
    mkdirSync(agentDir);
    expect(mountTmpfs(agentDir, "4m")).toBe(true);
    try {
      let server = await startServer({ Ledger }, { dataDir: data.dir });
      let client = await connect(wsUrl(server, "/agents/ledger/ro"));
      for (let i = 1; i <= 3; i++) expect(await client.rpc("add", ["kept"])).toBe(i);
      await client.close();
      await server.close();
      remount(agentDir, "ro");
      server = await startServer({ Ledger }, { dataDir: data.dir });
      const attempt = new RawClient(wsUrl(server, "/agents/ledger/ro"));
      let outcome: string;
      try {
        await attempt.opened;
        const answer = await attempt.call("add", ["kept"]);
        expect(answer.success).toBe(false);
        outcome = `write answered with error "${answer.error}"`;
        await attempt.close();
      } catch (error) {
        const { code, reason } = error as { code: number; reason: string };
        expect(code).toBe(1011);
        expect(attempt.received).toEqual([]);
        outcome = `connection closed ${code} "${reason}"`;
      }
      await server.close();
      // A read-only root: serve() itself refuses to start, with SQLite's error.
      remount(agentDir, "rw");
      const rootMount = join(data.dir, "root");
      mkdirSync(rootMount);
      expect(mountTmpfs(rootMount, "1m")).toBe(true);
      remount(rootMount, "ro");
      let startError = "";
      try {
        await startServer({ Ledger }, { dataDir: rootMount });
      } catch (error) {
        startError = (error as Error).message;
      } finally {
        unmount(rootMount);
      }
      expect(startError).not.toBe("");
      console.log(
        `read-only agent directory: ${outcome}; read-only root: serve() threw "${startError}"`,
      );
      server = await startServer({ Ledger }, { dataDir: data.dir });
      client = await connect(wsUrl(server, "/agents/ledger/ro"));
      expect(await client.rpc("integrity")).toBe("ok");
      expect(await client.rpc("get", ["kept"])).toBe(3);
      await client.close();
      await server.close();
    } finally {
      unmount(agentDir);
      data.remove();
    }
  });
});

describe("agents that fail", () => {
  let server: Awaited<ReturnType<typeof startServer>>;
  let ledger: RawClient;

  beforeAll(async () => {
    server = await startServer({ Ledger, Flaky, Crashy });
    ledger = await connect(wsUrl(server, "/agents/ledger/steady"));
  });

  afterAll(async () => {
    await ledger?.close();
    await server?.stop();
  });

  it("retries an agent whose onStart throws; concurrent callers share one attempt", async () => {
    Flaky.failuresLeft = 2;
    Flaky.attempts = 0;
    Flaky.startMs = 200;
    const first = await Promise.all(
      Array.from({ length: 5 }, () => refused(wsUrl(server, "/agents/flaky/f"))),
    );
    for (const closed of first) {
      // The reason never carries the exception's text.
      expect(closed).toMatchObject({ code: 1011, reason: "agent failed to start", received: [] });
    }
    expect(Flaky.attempts).toBe(1);
    const http = await fetch(`${server.url}/agents/flaky/f`);
    expect(http.status).toBe(500);
    expect(await http.text()).not.toContain("secret detail");
    expect(await ledger.rpc("add", ["during"])).toBe(1);
    const client = await connect(wsUrl(server, "/agents/flaky/f"));
    expect(await client.rpc("ping")).toBe("pong");
    expect(Flaky.attempts).toBe(3);
    Flaky.startMs = 0;
    await client.close();
  });

  it("contains exceptions from every hook to the connection or call that caused them", async () => {
    const url = wsUrl(server, "/agents/crashy/c");
    const rejected = await refused(`${url}?boom=connect`);
    expect(rejected).toMatchObject({ code: 1011, reason: "internal error" });
    const client = await connect(url);
    const neighbour = await connect(url);
    client.ws.send("throw please");
    client.ws.send("async");
    const explode = await client.call("explode");
    expect(explode).toMatchObject({ success: false, error: "callable exploded" });
    const later = await client.call("rejectLater");
    expect(later).toMatchObject({ success: false, error: "async callable rejected" });
    const bad = await client.call("unserializable");
    expect(bad).toMatchObject({
      success: false,
      error: "Result of unserializable is not serializable",
    });
    // onStateUpdate throws after the write committed: the caller still gets its answer.
    expect(await client.rpc("bump")).toBe(1);
    expect(await neighbour.rpc("bump")).toBe(2);
    await client.close(); // onClose throws
    expect(await neighbour.rpc("bump")).toBe(3);
    expect(await ledger.rpc("add", ["after-crashy"])).toBe(1);
    const again = await connect(url);
    expect(await again.rpc("bump")).toBe(4);
    await again.close();
    await neighbour.close();
  });

  it("never sends a stack trace to a client", async () => {
    const answer = await ledger.call("boom");
    expect(answer).toMatchObject({ success: false, error: "boom" });
    expect(JSON.stringify(answer)).not.toMatch(/secret\/internal|\bat /);
  });
});

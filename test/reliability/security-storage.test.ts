import { createHash } from "node:crypto";
import { readdirSync, statSync } from "node:fs";
import { join, relative, sep } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CloseCode } from "../../src/index.js";
import { connect, refused } from "../helpers/ws-client.js";
import { Ledger } from "./fixtures.js";
import { startServer, tcp, wsUrl } from "./helpers.js";

/**
 * SECURITY.md claims about what a URL can reach without any credentials being involved:
 * instance names cannot escape the data directory or alias another instance's database,
 * unknown paths do no work, and limits hold before anything is allocated.
 */

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out.push(...filesUnder(path));
    else out.push(path);
  }
  return out;
}

describe("instance names and the data directory", () => {
  let server: Awaited<ReturnType<typeof startServer>>;

  beforeAll(async () => {
    server = await startServer({ Ledger });
  });

  afterAll(async () => {
    await server?.stop();
  });

  it("no instance name reaches a file outside <dataDir>/<agent>/", async () => {
    const tricky = fc.oneof(
      fc.constantFrom(
        "..",
        ".",
        "%2e%2e",
        "..%2f..%2fetc",
        "..%5c..%5cwindows",
        "%00",
        "a%00b",
        "con",
        "nul.txt",
        "_outpost",
        "%E2%80%AE",
        "~",
        "%7E",
      ),
      fc.string({ minLength: 1, maxLength: 140, unit: "binary" }).map(encodeURIComponent),
      fc.string({ minLength: 1, maxLength: 40 }).map((s) => s.replaceAll("/", "..")),
    );
    const outcomes: Record<string, number> = {};
    await fc.assert(
      fc.asyncProperty(tricky, async (name) => {
        const client = await connect(wsUrl(server, `/agents/ledger/${name}`)).catch(
          (error: { code?: number; message: string }) => error,
        );
        if ("ws" in client) {
          await client.rpc("add", ["x"]);
          await client.close();
          outcomes.opened = (outcomes.opened ?? 0) + 1;
        } else {
          outcomes[client.message] = (outcomes[client.message] ?? 0) + 1;
        }
      }),
      { numRuns: 200, seed: 7 },
    );
    for (const file of filesUnder(server.dataDir)) {
      const parts = relative(server.dataDir, file).split(sep);
      expect(parts.length, file).toBe(2);
      expect(["ledger", "_outpost"]).toContain(parts[0]);
    }
    console.log("instance-name fuzz:", JSON.stringify(outcomes));
  });

  it("two different instance names never share one database file", async () => {
    // Names whose encoding is long are stored under a hash; a short name spelling that
    // hash must not land in the same file.
    const long = "é".repeat(100);
    const owner = await connect(wsUrl(server, `/agents/ledger/${encodeURIComponent(long)}`));
    expect(await owner.rpc("add", ["private"])).toBe(1);
    await owner.close();
    const hash = createHash("sha256").update(long).digest("hex").slice(0, 40);
    const intruder = await connect(wsUrl(server, `/agents/ledger/~${hash}`));
    expect(await intruder.rpc("get", ["private"])).toBe(0);
    await intruder.close();
  });

  it("an unknown agent or path is refused before any instance or file exists", async () => {
    const before = filesUnder(server.dataDir).length;
    const instances = server.stats().instances;
    // An unknown agent is closed 4004 (a browser can read that); a path that names no
    // agent at all is refused in the handshake. Paths below an instance name reach it.
    const expected: Record<string, number> = {
      "/agents/nope/x": CloseCode.UnknownAgent,
      "/agents/ledger": 1006,
      "/other": 1006,
    };
    for (const [path, code] of Object.entries(expected)) {
      const closed = await refused(wsUrl(server, path));
      expect(closed.code, path).toBe(code);
      expect(closed.received).toEqual([]);
    }
    const response = await fetch(`${server.url}/agents/nope/x`);
    expect(response.status).toBe(404);
    expect(filesUnder(server.dataDir).length).toBe(before);
    expect(server.stats().instances).toBe(instances);
  });

  it("an over-long URL is refused with 414 before routing", async () => {
    const socket = await tcp(server.port);
    const answer = new Promise<string>((resolve) => {
      let text = "";
      socket.on("data", (d) => {
        text += d.toString();
      });
      socket.on("close", () => resolve(text));
    });
    const path = `/agents/ledger/x?pad=${"a".repeat(9_000)}`;
    socket.write(
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    const text = await answer;
    expect(text).toMatch(/^HTTP\/1.1 414/);
  });
});

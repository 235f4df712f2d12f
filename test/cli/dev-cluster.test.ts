import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createKeySet, issueToken } from "../../src/auth/index.js";
import { createTestSchema, POSTGRES_URL, type TestSchema } from "../cluster/postgres.js";
import { tempDir } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";
import { connect } from "../helpers/ws-client.js";

const ROOT = join(import.meta.dirname, "..", "..");
const BIN = join(ROOT, "bin", "outpost.js");
const MODULE = join(ROOT, "test", "fixtures", "dev-module.ts");

/** `outpost dev … --cluster <url> --cluster-schema <schema>`, with its output collected. */
function devNode(schema: string, dataDir: string) {
  const child = spawn(
    process.execPath,
    [BIN, "dev", MODULE, "--port", "0", "--data-dir", dataDir, "--json"].concat([
      "--cluster",
      POSTGRES_URL,
      "--cluster-schema",
      schema,
    ]),
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout?.on("data", (chunk) => {
    output += chunk;
  });
  child.stderr?.on("data", (chunk) => {
    output += chunk;
  });
  return { child, output: () => output };
}

describe("outpost dev --cluster", () => {
  let schema: TestSchema;
  const children: ChildProcess[] = [];
  const dirs: Array<{ remove(): void }> = [];

  beforeAll(async () => {
    schema = await createTestSchema();
  });

  afterAll(async () => {
    for (const child of children) child.kill("SIGKILL");
    await schema?.drop();
    for (const dir of dirs) dir.remove();
  });

  it("--cluster and --cluster-schema make two dev servers one cluster: one instance, reached from either", async () => {
    const nodes = [0, 1].map(() => {
      const dir = tempDir("outpost-dev-cluster-");
      dirs.push(dir);
      const node = devNode(schema.schema, dir.dir);
      children.push(node.child);
      return node;
    });
    const ports: number[] = [];
    for (const node of nodes) {
      await waitFor(
        () => /Outpost dev server at http:\/\/[^:]+:\d+/.test(node.output()),
        "the URL line",
        20_000,
      );
      expect(node.output()).toContain(`cluster: on (schema ${schema.schema})`);
      ports.push(Number(/Outpost dev server at http:\/\/[^:]+:(\d+)/.exec(node.output())![1]));
    }
    const keys = await createKeySet({ secret: "dev-module-secret-0123456789abcdef-xyz" });
    const token = () => issueToken(keys, { sub: "dev", agent: "tally-board", name: "shared" });
    const first = await connect(
      `ws://127.0.0.1:${ports[0]}/agents/tally-board/shared?token=${await token()}`,
    );
    const second = await connect(
      `ws://127.0.0.1:${ports[1]}/agents/tally-board/shared?token=${await token()}`,
    );
    expect(await first.rpc("add", [2])).toBe(2);
    // The same instance: the second node's client adds to the same total.
    expect(await second.rpc("add", [3])).toBe(5);
    const rows = await schema.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM ${schema.sql(schema.schema)}.nodes`;
    expect(rows[0]!.n).toBe(2);
    first.ws.terminate();
    second.ws.terminate();
  }, 60_000);

  it("refuses --cluster-schema without --cluster", async () => {
    const child = spawn(process.execPath, [BIN, "dev", MODULE, "--cluster-schema", "x"], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stderr?.on("data", (chunk) => {
      output += chunk;
    });
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(code).toBe(1);
    expect(output).toContain("--cluster-schema needs --cluster");
  });
});

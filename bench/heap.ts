/**
 * Where a server's memory per idle connection goes: heap snapshots of one contender's
 * server before and after opening N authenticated connections, diffed by object kind and
 * divided by N. The memory workload says how much; this says what.
 *
 *   npx tsx bench/heap.ts [--contender=outpost] [--connections=2000] [--top=30]
 *
 * Strings that grew are listed with examples of their contents (these are bench tokens
 * and URLs on 127.0.0.1, nothing secret).
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CONTENDERS, type Contender } from "./config.js";
import { LoadGenerator } from "./load/index.js";
import { ServerProcess } from "./servers/index.js";
import { createBenchKeys } from "./tokens.js";

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** Self size and count per `type:name` of every object in a heap snapshot. */
export function tally(
  snapshot: Snapshot,
): Map<string, { size: number; count: number; examples: string[] }> {
  const fields = snapshot.snapshot.meta.node_fields;
  const width = fields.length;
  const typeAt = fields.indexOf("type");
  const nameAt = fields.indexOf("name");
  const sizeAt = fields.indexOf("self_size");
  const types = snapshot.snapshot.meta.node_types[0];
  const totals = new Map<string, { size: number; count: number; examples: string[] }>();
  for (let i = 0; i < snapshot.nodes.length; i += width) {
    const type = types[snapshot.nodes[i + typeAt]!] ?? "?";
    let name = snapshot.strings[snapshot.nodes[i + nameAt]!] ?? "?";
    // Strings and code are grouped by kind: their names are their contents (kept as examples).
    const content = name;
    if (type === "string" || type === "concatenated string" || type === "sliced string") name = "";
    if (type === "code" || type === "hidden" || type === "number") name = "";
    if (name.length > 60) name = `${name.slice(0, 57)}...`;
    const key = `${type}:${name}`;
    const entry = totals.get(key) ?? { size: 0, count: 0, examples: [] };
    entry.size += snapshot.nodes[i + sizeAt]!;
    entry.count++;
    // The newest strings are the likeliest per-connection ones: keep the last few.
    if (name === "" && type.endsWith("string")) {
      entry.examples.push(content.slice(0, 100));
      if (entry.examples.length > 400) entry.examples.splice(0, 200);
    }
    totals.set(key, entry);
  }
  return totals;
}

const args = process.argv.slice(2);
const option = (name: string, fallback: string) =>
  args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const contender = option("contender", "outpost") as Contender;
if (!CONTENDERS.includes(contender))
  throw new Error(`--contender: one of ${CONTENDERS.join(", ")}`);
const count = Number(option("connections", "2000"));
const top = Number(option("top", "30"));

const dir = mkdtempSync(join(tmpdir(), "outpost-heap-"));
const keys = await createBenchKeys();
const load = LoadGenerator.start();
const server = await ServerProcess.start(contender, { keys, algorithm: "EdDSA" });
try {
  await load.run({ cmd: "init", keys });
  await load.run({ cmd: "tokens", algorithm: "EdDSA", count: count + 1 });
  const target = { contender, port: server.port };
  let before: ReturnType<typeof tally> = new Map();
  const opened = await load.openIdle(target, count, 200, async () => {
    const path = await server.snapshot(join(dir, "before.heapsnapshot"));
    before = tally(JSON.parse(readFileSync(path, "utf8")));
  });
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const after = tally(
    JSON.parse(readFileSync(await server.snapshot(join(dir, "after.heapsnapshot")), "utf8")),
  );
  const n = opened.opened;
  const rows = [...after].map(([key, a]) => {
    const b = before.get(key) ?? { size: 0, count: 0 };
    return { key, bytes: (a.size - b.size) / n, objects: (a.count - b.count) / n };
  });
  rows.sort((x, y) => y.bytes - x.bytes);
  const total = rows.reduce((sum, r) => sum + r.bytes, 0);
  console.log(
    `${contender}: ${n} idle connections, ${total.toFixed(0)} heap bytes each (self sizes)\n`,
  );
  console.log("   bytes/conn  objects/conn  kind:name");
  for (const r of rows.slice(0, top)) {
    console.log(
      `${r.bytes.toFixed(0).padStart(12)}  ${r.objects.toFixed(2).padStart(12)}  ${r.key}`,
    );
  }
  // What the strings that grew say, so a retained copy of a URL or token can be named.
  for (const [key, entry] of after) {
    const grew = (entry.count - (before.get(key)?.count ?? 0)) / n;
    if (!key.endsWith("string:") || grew < 0.5) continue;
    const seen = new Set(before.get(key)?.examples);
    const fresh = [...new Set(entry.examples.filter((e) => !seen.has(e)))].slice(-8);
    console.log(`\n  newest ${key.slice(0, -1)}s, for example:`);
    for (const e of fresh) console.log(`    ${JSON.stringify(e)}`);
  }
  await load.run({ cmd: "closeAll" });
} finally {
  await server.stop();
  await load.stop();
  rmSync(dir, { recursive: true, force: true });
}

import { afterEach, describe, expect, it } from "vitest";
import { type ChildServer, killChild, spawnCounterServer } from "../helpers/child.js";
import { tempDir } from "../helpers/server.js";
import { connect, isFrame } from "../helpers/ws-client.js";

let data: ReturnType<typeof tempDir> | undefined;
let child: ChildServer | undefined;

afterEach(async () => {
  await killChild(child);
  child = undefined;
  data?.remove();
  data = undefined;
});

/**
 * Pipeline `total` increments on `name` and SIGKILL the server the moment the answer to
 * increment number `killAfter` arrives. Resolves with the highest count acknowledged.
 */
async function incrementThenKill(
  server: ChildServer,
  name: string,
  total: number,
  killAfter: number,
): Promise<number> {
  const client = await connect(`ws://127.0.0.1:${server.port}/agents/counter/${name}`, {
    record: false,
  });
  let acked = 0;
  let highest = 0;
  client.onMessage((message) => {
    if (!isFrame(message) || message.type !== "rpc" || message.done !== true) return;
    acked++;
    highest = Math.max(highest, (message.result as number | undefined) ?? 0);
    // Synchronously, in the same tick the acknowledgement arrived in.
    if (acked === killAfter) server.child.kill("SIGKILL");
  });
  for (let i = 0; i < total; i++) client.sendCall("increment", [1]);
  await client.closed;
  if (acked < killAfter) throw new Error("closed early");
  return highest;
}

async function storedCount(dataDir: string, name: string): Promise<number> {
  child = await spawnCounterServer(dataDir);
  const client = await connect(`ws://127.0.0.1:${child.port}/agents/counter/${name}`);
  const state = client.frames("cf_agent_state")[0]?.state as { count: number };
  await client.close();
  return state.count;
}

describe("durability", () => {
  it("keeps every acknowledged setState when the server is killed with SIGKILL right after the last ack", async () => {
    data = tempDir("outpost-crash-");
    child = await spawnCounterServer(data.dir);
    const acked = await incrementThenKill(child, "exact", 150, 150);
    expect(await child.exited).toMatchObject({ signal: "SIGKILL" });
    expect(acked).toBe(150);
    expect(await storedCount(data.dir, "exact")).toBe(150);
  });

  it("keeps every acknowledged setState when SIGKILL lands in the middle of a write storm", async () => {
    data = tempDir("outpost-crash-");
    child = await spawnCounterServer(data.dir);
    const acked = await incrementThenKill(child, "storm", 2_000, 300);
    expect(await child.exited).toMatchObject({ signal: "SIGKILL" });
    expect(acked).toBeGreaterThanOrEqual(300);
    const stored = await storedCount(data.dir, "storm");
    // Writes after the last acknowledgement may or may not have landed; none before it is lost.
    expect(stored).toBeGreaterThanOrEqual(acked);
    expect(stored).toBeLessThanOrEqual(2_000);
  });
});

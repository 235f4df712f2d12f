import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { type ChildServer, killChild, spawnCounterServer } from "../helpers/child.js";
import { tempDir } from "../helpers/server.js";
import { connect } from "../helpers/ws-client.js";

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
function incrementThenKill(server: ChildServer, name: string, total: number, killAfter: number) {
  return new Promise<number>((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/agents/counter/${name}`);
    let acked = 0;
    let highest = 0;
    let sent = false;
    ws.on("error", () => {});
    ws.on("message", (data) => {
      const frame = JSON.parse(data.toString()) as {
        type: string;
        result?: number;
        done?: boolean;
      };
      if (frame.type === "cf_agent_identity" && !sent) {
        sent = true;
        for (let i = 0; i < total; i++) {
          ws.send(JSON.stringify({ type: "rpc", id: `i${i}`, method: "increment", args: [1] }));
        }
        return;
      }
      if (frame.type !== "rpc" || frame.done !== true) return;
      acked++;
      highest = Math.max(highest, frame.result ?? 0);
      // Synchronously, in the same tick the acknowledgement arrived in.
      if (acked === killAfter) server.child.kill("SIGKILL");
    });
    ws.on("close", () =>
      acked >= killAfter ? resolve(highest) : reject(new Error("closed early")),
    );
  });
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

import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { openGate, Planner, runs, starts } from "../fixtures/scheduling-agents.js";
import { startServer, type TestServer, wsUrl } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";
import { connect, type RawClient } from "../helpers/ws-client.js";

let server: TestServer | undefined;
const clients: RawClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await server?.stop();
  server = undefined;
});

async function open(name: string): Promise<RawClient> {
  const client = await connect(wsUrl(server!, `/agents/planner/${name}`));
  clients.push(client);
  return client;
}

/** Open and close a connection to `name`, leaving the instance idle. */
async function touch(name: string): Promise<void> {
  const client = await open(name);
  await client.close();
}

describe("keepAlive", () => {
  it("keepAlive prevents idle eviction; after the disposer runs the instance is evicted again", async () => {
    server = await startServer({ Planner }, { idleTimeout: 50 });
    const held = await open("held");
    expect(await held.rpc("hold")).toBe(true);
    await held.close();
    await touch("control");
    // The control instance, idle at the same time, is evicted; the held one stays.
    await waitFor(() => server!.stats().instances === 1, "the control instance to be evicted");
    await new Promise((resolve) => setTimeout(resolve, 400)); // eight idle timeouts
    expect(server.stats().instances).toBe(1);
    const again = await open("held");
    expect(starts.get("held")).toBe(1); // the same instance, never restarted
    expect(await again.rpc("release")).toBe(true);
    await again.close();
    await waitFor(() => server!.stats().instances === 0, "the released instance to be evicted");
    await touch("held");
    expect(starts.get("held")).toBe(2);
  });

  it("keepAliveWhile holds the instance until its work settles, then lets it go", async () => {
    server = await startServer({ Planner }, { idleTimeout: 50 });
    const client = await open("while");
    expect(await client.rpc("holdWhile", [800])).toBe(true);
    await client.close();
    await touch("control-2");
    await waitFor(
      () => server!.stats().instances === 1,
      "the control instance to be evicted",
      10_000,
    );
    // Evicted only after the work it kept alive has finished.
    expect((runs.get("while") ?? []).some((r) => r.kind === "kept")).toBe(false);
    await waitFor(() => server!.stats().instances === 0, "the instance to be evicted", 10_000);
    expect(runs.get("while")?.filter((r) => r.kind === "kept")).toHaveLength(1);
    expect(starts.get("while")).toBe(1);
  });
});

describe("destroy", () => {
  it("destroy() closes every connection, cancels schedules and the queue, deletes the database files; the next access starts fresh", async () => {
    server = await startServer({ Planner });
    const a = await open("doomed");
    const b = await open("doomed");
    expect(await a.rpc("setNote", ["hello"])).toEqual(["hello"]);
    await a.rpc("after", [0.6, "cancelled-by-destroy"]);
    await a.rpc("every", [0.3, "cancelled-interval"]);
    await a.rpc("enqueue", ["work", { label: "running", gate: true, write: true }]);
    await waitFor(() => runs.get("doomed")?.length === 1, "the queue item to start");
    await a.rpc("enqueue", ["work", { label: "never" }]);
    const file = join(server.dataDir, "planner", "doomed.sqlite");
    expect(existsSync(file)).toBe(true);
    expect(existsSync(`${file}-wal`)).toBe(true);

    a.sendCall("destroyMe");
    expect(await a.closed).toEqual({ code: 1001, reason: "agent destroyed" });
    expect(await b.closed).toEqual({ code: 1001, reason: "agent destroyed" });
    for (const path of [file, `${file}-wal`, `${file}-shm`]) expect(existsSync(path)).toBe(false);
    expect(server.stats().instances).toBe(0);

    // The item that was running finishes; its late write does not bring the data back.
    expect(openGate("running")).toBe(true);
    await waitFor(() => runs.get("doomed")?.[0]?.end !== undefined, "the running item to end");
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(existsSync(file)).toBe(false);
    const fresh = await open("doomed");
    expect(starts.get("doomed")).toBe(2);
    expect(fresh.frames("cf_agent_state")[0]).toMatchObject({ state: { note: "initial" } });
    expect(await fresh.rpc("notes")).toEqual([]);
    expect(await fresh.rpc("listSync")).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 800)); // past every cancelled due time
    expect(runs.get("doomed")?.map((r) => r.label)).toEqual(["running"]);
  });

  it("a schedule whose callback calls destroy() deletes the instance, as the SDK's self-destructing agent", async () => {
    server = await startServer({ Planner });
    const client = await open("self-destruct");
    expect(await client.rpc("setNote", ["soon gone"])).toEqual(["soon gone"]);
    await client.rpc("destroyLater", [0.2]);
    expect(await client.closed).toEqual({ code: 1001, reason: "agent destroyed" });
    const file = join(server.dataDir, "planner", "self-destruct.sqlite");
    expect(existsSync(file)).toBe(false);
    const fresh = await open("self-destruct");
    expect(await fresh.rpc("notes")).toEqual([]);
    expect(await fresh.rpc("listSync")).toEqual([]);
  });

  it("agent code still running after destroy() cannot create the database again", async () => {
    server = await startServer({ Planner });
    const client = await open("late-writer");
    expect(await client.rpc("writeLater", [300])).toBe(true);
    client.sendCall("destroyMe");
    expect((await client.closed).code).toBe(1001);
    await waitFor(() => (runs.get("late-writer") ?? []).length === 1, "the late write");
    expect(runs.get("late-writer")?.[0]?.label).toBe("refused");
    expect(existsSync(join(server.dataDir, "planner", "late-writer.sqlite"))).toBe(false);
  });
});

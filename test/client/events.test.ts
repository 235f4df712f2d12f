import type { AddressInfo } from "node:net";
import { createServer } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { waitFor } from "../helpers/wait.js";
import { closeClients, labClient, type Outpost, startOutpost } from "./fixtures.js";

let outpost: Outpost;
let instance = 0;
const room = () => `events-${++instance}`;

beforeAll(async () => {
  outpost = await startOutpost();
});
afterEach(() => {
  closeClients();
  vi.restoreAllMocks();
});
afterAll(async () => {
  await outpost.dispose();
});

/** The `type` of every JSON frame, or the text itself for the agent's own messages. */
const frameTypes = (events: MessageEvent[]) =>
  events.map((event) => {
    const data = String(event.data);
    return data.startsWith("{") ? (JSON.parse(data) as { type: string }).type : data;
  });

describe("addEventListener", () => {
  it("gives message listeners every frame from the server, protocol frames included", async () => {
    const name = room();
    const client = labClient(outpost, {
      name,
      query: { token: await outpost.token(name) },
      startClosed: true,
    });
    const messages: MessageEvent[] = [];
    client.addEventListener("message", (event) => messages.push(event));
    client.reconnect();
    await client.ready;
    await client.call("increment", [2]);
    client.send("hello");
    await waitFor(() => frameTypes(messages).includes("echo:hello"), "the echo");
    const types = frameTypes(messages);
    expect(types.slice(0, 2)).toEqual(["cf_agent_identity", "cf_agent_state"]);
    expect(types).toContain("rpc");
    expect(types.at(-1)).toBe("echo:hello");
  });

  it("fires open once the server accepted the connection, and close with the code on each drop", async () => {
    const name = room();
    const client = labClient(outpost, {
      name,
      query: async () => ({ token: await outpost.token(name) }),
      startClosed: true,
    });
    const seen: string[] = [];
    client.addEventListener("open", () => seen.push(`open:${client.status.state}`));
    client.addEventListener("close", (event) => seen.push(`close:${event.code}`));
    client.reconnect();
    await client.ready;
    expect(seen).toEqual(["open:open"]);
    await client.call("kick", [1012, "restarting"]);
    await waitFor(() => seen.length === 3, "a close and a second open");
    expect(seen).toEqual(["open:open", "close:1012", "open:open"]);
  });

  it("fires close but never open for a connection the server refuses", async () => {
    const name = room();
    const client = labClient(outpost, {
      name,
      query: { token: await outpost.token(`${name}-elsewhere`) },
      startClosed: true,
    });
    const seen: string[] = [];
    client.addEventListener("open", () => seen.push("open"));
    client.addEventListener("close", (event) => seen.push(`close:${event.code}`));
    client.reconnect();
    await waitFor(() => client.connectionError !== null, "the refusal");
    expect(seen).toEqual(["close:4003"]);
  });

  it("fires error and close when the socket fails", async () => {
    // A port nobody listens on: the connection is refused.
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const client = labClient(outpost, {
      name: room(),
      host: `127.0.0.1:${port}`,
      reconnect: { minDelay: 20, maxDelay: 50, maxRetries: 1 },
      startClosed: true,
    });
    const seen: string[] = [];
    client.addEventListener("error", (event) => seen.push(event.type));
    client.addEventListener("close", () => seen.push("close"));
    client.reconnect();
    // partysocket closes the failed socket before it reports the error, as for the official client.
    await waitFor(() => seen.includes("error"), "the failed attempt");
    expect(seen.slice(0, 2)).toEqual(["close", "error"]);
  });

  it("stops calling a listener after removeEventListener, after once, and when its signal aborts", async () => {
    const name = room();
    const client = labClient(outpost, { name, query: { token: await outpost.token(name) } });
    const counts = { removed: 0, once: 0, signalled: 0, kept: 0 };
    const removed = () => counts.removed++;
    const controller = new AbortController();
    client.addEventListener("message", removed);
    client.addEventListener("message", () => counts.once++, { once: true });
    client.addEventListener("message", () => counts.signalled++, { signal: controller.signal });
    client.addEventListener("message", { handleEvent: () => counts.kept++ });
    await client.ready;
    const atReady = { ...counts };
    client.removeEventListener("message", removed);
    controller.abort();
    await client.call("increment", [1]);
    client.send("ping");
    await waitFor(() => counts.kept >= atReady.kept + 3, "the state, rpc and echo frames");
    expect(atReady.removed).toBeGreaterThan(0);
    expect(counts.removed).toBe(atReady.removed);
    expect(counts.signalled).toBe(atReady.signalled);
    expect(counts.once).toBe(1);
  });

  it("registers a listener once however often it is added", async () => {
    const name = room();
    const client = labClient(outpost, { name, query: { token: await outpost.token(name) } });
    let calls = 0;
    const listener = () => calls++;
    client.addEventListener("open", listener);
    client.addEventListener("open", listener);
    await client.ready;
    await waitFor(() => calls > 0, "the open event");
    expect(calls).toBe(1);
  });

  it("reports a throwing listener without stopping the other listeners or the client", async () => {
    // Errors a listener throws are re-thrown in a microtask, as EventTarget reports them;
    // catch them there so the test sees them instead of the process.
    const reported: unknown[] = [];
    const original = globalThis.queueMicrotask;
    vi.spyOn(globalThis, "queueMicrotask").mockImplementation((task) =>
      original(() => {
        try {
          task();
        } catch (error) {
          reported.push(error);
        }
      }),
    );
    const name = room();
    const client = labClient(outpost, { name, query: { token: await outpost.token(name) } });
    let after = 0;
    client.addEventListener("open", () => {
      throw new Error("listener bug");
    });
    client.addEventListener("open", () => after++);
    await client.ready;
    expect(after).toBe(1);
    expect(await client.call("increment", [5])).toBe(5);
    await waitFor(() => reported.length > 0, "the reported error");
    expect(reported).toEqual([new Error("listener bug")]);
  });
});

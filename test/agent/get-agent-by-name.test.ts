import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Agent,
  AgentCallError,
  callable,
  getAgentByName,
  getCurrentAgent,
  type StreamingResponse,
} from "../../src/index.js";
import { startServer, type TestServer, wsUrl } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";
import { connect } from "../helpers/ws-client.js";

const starts: string[] = [];

class Tally extends Agent<unknown, { count: number }> {
  override initialState = { count: 0 };
  started = false;

  override async onStart() {
    await new Promise((resolve) => setTimeout(resolve, 20));
    this.started = true;
    starts.push(this.name);
  }

  @callable()
  increment(by = 1) {
    this.setState({ count: this.state.count + by });
    return this.state.count;
  }

  @callable()
  wasStarted() {
    return this.started;
  }

  @callable()
  whoCalls() {
    const { agent, connection } = getCurrentAgent();
    return { self: agent === this, connection: connection === undefined ? null : connection.id };
  }

  @callable()
  mutate(input: { items: number[]; at: Date }) {
    input.items.push(99);
    return { items: input.items, at: input.at, kind: typeof input.at };
  }

  @callable()
  fail(message: string) {
    throw new Error(message);
  }

  @callable({ streaming: true })
  count(stream: StreamingResponse) {
    stream.end(1);
  }

  /** Not decorated: no client, and no stub, may call it. */
  secret() {
    return "hidden";
  }

  override onRequest(request: Request) {
    return new Response(`tally ${this.name} ${new URL(request.url).pathname}`);
  }
}

class Caller extends Agent {
  @callable()
  async bump(name: string, by: number) {
    const tally = await getAgentByName(Tally, name);
    return tally.increment(by);
  }

  @callable()
  async failing(name: string) {
    const tally = await getAgentByName(Tally, name);
    try {
      await tally.fail("no luck");
      return "resolved";
    } catch (error) {
      const e = error as AgentCallError;
      return { name: e.name, code: e.code, message: e.message, stack: String(e.stack) };
    }
  }

  @callable()
  async later(name: string) {
    await this.schedule(0, "bumpLater", { name });
  }

  async bumpLater(payload: { name: string }) {
    const tally = await getAgentByName(Tally, payload.name);
    await tally.increment(10);
  }
}

/** The error text a client gets for `method` on `tally/<name>`. */
async function clientError(server: TestServer, name: string, method: string, args: unknown[]) {
  const client = await connect(wsUrl(server, `/agents/tally/${name}`));
  const answer = await client.call(method, args);
  client.ws.close();
  return answer.error;
}

describe("getAgentByName", () => {
  let server: TestServer;
  let plain: Server;
  beforeAll(async () => {
    server = await startServer({ Tally, Caller }, { idleTimeout: 100 });
    // A plain HTTP handler in the same process, outside any agent.
    plain = createServer((req, res) => {
      const name = new URL(req.url ?? "/", "http://x").searchParams.get("name") ?? "plain";
      getAgentByName(Tally, name)
        .then((tally) => tally.increment(5))
        .then((count) => res.end(String(count)))
        .catch((error: Error) => {
          res.statusCode = 500;
          res.end(error.message);
        });
    });
    await new Promise<void>((resolve) => plain.listen(0, "127.0.0.1", resolve));
  });
  afterAll(async () => {
    await new Promise((resolve) => plain.close(resolve));
    await server?.stop();
  });

  it("lets one agent call another's callable and get its result, without a socket", async () => {
    const watcher = await connect(wsUrl(server, "/agents/tally/a1"));
    const caller = await connect(wsUrl(server, "/agents/caller/c"));
    expect(await caller.rpc("bump", ["a1", 2])).toBe(2);
    expect(await caller.rpc("bump", ["a1", 3])).toBe(5);
    // The callee's state change reached its own connections as usual.
    await watcher.waitFor((m) => typeof m === "object" && JSON.stringify(m).includes('"count":5'));
    expect(server.stats().connections).toBe(2);
    watcher.ws.close();
    caller.ws.close();
  });

  it("runs the callee as itself, with no connection, as getCurrentAgent() shows", async () => {
    const tally = await getAgentByName(Tally, "a2");
    expect(await tally.whoCalls()).toEqual({ self: true, connection: null });
  });

  it("works from a schedule", async () => {
    const caller = await connect(wsUrl(server, "/agents/caller/s"));
    await caller.rpc("later", ["a3"]);
    const tally = await getAgentByName(Tally, "a3");
    await waitFor(async () => (await tally.increment(0)) === 10, "the scheduled call");
    caller.ws.close();
  });

  it("works from a plain HTTP handler in the same process", async () => {
    const port = (plain.address() as AddressInfo).port;
    const first = await fetch(`http://127.0.0.1:${port}/?name=a4`);
    expect(await first.text()).toBe("5");
    expect(await (await fetch(`http://127.0.0.1:${port}/?name=a4`)).text()).toBe("10");
  });

  it("resolves once the instance's onStart has finished", async () => {
    const tally = await getAgentByName(Tally, "a5");
    expect(starts).toContain("a5");
    expect(await tally.wasStarted()).toBe(true);
  });

  it("fails with the errors a client gets: not callable, the thrown message, never a stack", async () => {
    const tally = await getAgentByName(Tally, "a6");
    for (const [method, args] of [
      ["secret", []],
      ["nothing", []],
      ["fail", ["broken on purpose"]],
      ["count", []],
    ] as const) {
      const error = await (
        tally as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>
      )[method]!(...args).then(
        () => undefined,
        (e: unknown) => e as AgentCallError,
      );
      expect(error).toBeInstanceOf(AgentCallError);
      expect(error!.code).toBe("remote_error");
      if (method !== "count") {
        expect(error!.message).toBe(await clientError(server, "a6", method, [...args]));
      }
    }
    const caller = await connect(wsUrl(server, "/agents/caller/e"));
    const seen = await caller.rpc<{ name: string; message: string; stack: string }>("failing", [
      "a6",
    ]);
    expect(seen).toMatchObject({
      name: "AgentCallError",
      code: "remote_error",
      message: "no luck",
    });
    expect(seen.stack).not.toMatch(/Tally\.fail/);
    caller.ws.close();
  });

  it("passes arguments and results as JSON copies, as over a socket", async () => {
    const tally = await getAgentByName(Tally, "a7");
    const input = { items: [1, 2], at: new Date(0) };
    const result = await tally.mutate(input);
    expect(input.items).toEqual([1, 2]);
    expect(result).toEqual({ items: [1, 2, 99], at: "1970-01-01T00:00:00.000Z", kind: "string" });
  });

  it("reaches onRequest through stub.fetch", async () => {
    const tally = await getAgentByName(Tally, "a8");
    const response = await tally.fetch(new Request("http://internal/agents/tally/a8/report"));
    expect(await response.text()).toBe("tally a8 /agents/tally/a8/report");
  });

  it("starts an evicted instance again for the next call, with its state", async () => {
    const tally = await getAgentByName(Tally, "a9");
    expect(await tally.increment(4)).toBe(4);
    await waitFor(() => server.stats().instances === 0, "the idle instances to be evicted", 10_000);
    expect(await tally.increment(1)).toBe(5);
    expect(starts.filter((name) => name === "a9")).toHaveLength(2);
  });

  it("says so when no running server serves the class", async () => {
    class Elsewhere extends Agent {}
    await expect(getAgentByName(Elsewhere, "x")).rejects.toThrow(
      "Elsewhere is not served by a running server in this process",
    );
  });
});

import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Agent,
  type Connection,
  type ConnectionContext,
  callable,
  getCurrentAgent,
} from "../../src/index.js";
import { httpUrl, startServer, type TestServer, wsUrl } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";
import { connect } from "../helpers/ws-client.js";

type Seen = Array<[string, unknown, string]>;
const sourceName = (source: Connection | "server") =>
  source === "server" ? "server" : `connection:${source.id}`;

/** Bumps its state on request and reports which state hooks ran; overrides none itself. */
class Recorder extends Agent<unknown, { n: number }> {
  override initialState = { n: 0 };
  seen: Seen = [];
  record(hook: string, state: { n: number }, source: Connection | "server") {
    this.seen.push([hook, state, sourceName(source)]);
  }
  @callable()
  bump() {
    this.setState({ n: this.state.n + 1 });
    return this.seen;
  }
  @callable()
  log() {
    return this.seen;
  }
}

class Changed extends Recorder {
  override onStateChanged(state: { n: number }, source: Connection | "server") {
    this.record("onStateChanged", state, source);
  }
}

class Updated extends Recorder {
  override onStateUpdate(state: { n: number }, source: Connection | "server") {
    this.record("onStateUpdate", state, source);
  }
}

class Both extends Recorder {
  override onStateChanged(state: { n: number }, source: Connection | "server") {
    this.record("onStateChanged", state, source);
  }
  override onStateUpdate(state: { n: number }, source: Connection | "server") {
    this.record("onStateUpdate", state, source);
  }
}

/** Throws on a connection (a callable) and off one (an HTTP request). */
class Failing extends Agent {
  errors: unknown[][] = [];
  @callable()
  boom() {
    throw new Error("on a connection");
  }
  @callable()
  report() {
    return this.errors;
  }
  override onRequest(): Response {
    throw new Error("off a connection");
  }
}

/** The SDK's two-argument form. */
class TwoArgs extends Failing {
  override onError(connection: Connection | undefined, error: unknown) {
    this.errors.push([
      connection === undefined ? "no connection" : `connection ${typeof connection.id}`,
      (error as Error).message,
    ]);
  }
}

/** The SDK's one-argument form. */
class OneArg extends Failing {
  override onError(error: unknown) {
    this.errors.push([(error as Error).message]);
  }
}

/** Reports what getCurrentAgent() holds in each hook. */
class Requester extends Agent {
  override shouldConnectionBeReadonly(_connection: Connection, ctx: ConnectionContext) {
    return getCurrentAgent().request !== ctx.request;
  }
  override onConnect(connection: Connection, ctx: ConnectionContext) {
    const { request } = getCurrentAgent();
    connection.send(
      JSON.stringify({
        type: "at-connect",
        same: request === ctx.request,
        header: request?.headers.get("x-app"),
        readonly: connection.readonly,
      }),
    );
  }
  @callable()
  inCall() {
    return getCurrentAgent().request === undefined;
  }
  override async onRequest(request: Request) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    const current = getCurrentAgent().request;
    return Response.json({ same: current === request, url: current?.url });
  }
}

/** Overrides onClose alone: the only hook that runs for it is the one on leaving. */
class Leaver extends Agent {
  static left: Array<{ self: boolean; connection: boolean; afterAwait: boolean }> = [];
  override async onClose(connection: Connection) {
    const before = getCurrentAgent();
    await new Promise((resolve) => setTimeout(resolve, 5));
    const after = getCurrentAgent();
    Leaver.left.push({
      self: before.agent === this,
      connection: before.connection?.id === connection.id,
      afterAwait: after.agent === this && after.connection?.id === connection.id,
    });
  }
}

/** Overrides shouldConnectionBeReadonly alone, and asks getCurrentAgent() in it. */
class ReadonlyOnly extends Agent {
  override shouldConnectionBeReadonly(connection: Connection): boolean {
    const current = getCurrentAgent();
    return current.agent === this && current.connection?.id === connection.id;
  }
  @callable()
  isReadonly() {
    return getCurrentAgent().connection?.readonly;
  }
}

/** Callables that ask getCurrentAgent() after waiting, while other connections' frames run. */
class Waiter extends Agent {
  static later: Array<{ asked: string; seen: string | undefined }> = [];
  @callable()
  async idAfter(ms: number) {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return getCurrentAgent().connection?.id;
  }
  @callable()
  idNow() {
    const asked = getCurrentAgent().connection?.id ?? "";
    // A callback left behind by a synchronous callable keeps its caller, too.
    setTimeout(() => Waiter.later.push({ asked, seen: getCurrentAgent().connection?.id }), 10);
    return asked;
  }
}

describe("agent hooks as in the SDK", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({
      Changed,
      Updated,
      Both,
      TwoArgs,
      OneArg,
      Requester,
      Leaver,
      ReadonlyOnly,
      Waiter,
    });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("calls onStateChanged(state, source) after a server write and after a client write", async () => {
    const client = await connect(wsUrl(server, "/agents/changed/a"));
    const other = await connect(wsUrl(server, "/agents/changed/a"));
    expect(await client.rpc("bump")).toEqual([["onStateChanged", { n: 1 }, "server"]]);
    other.send({ type: "cf_agent_state", state: { n: 7 } });
    await client.waitFor(
      (m) => typeof m === "object" && (m as { state?: { n: number } }).state?.n === 7,
    );
    const log = await client.rpc<Seen>("log");
    expect(log[1]![0]).toBe("onStateChanged");
    expect(log[1]![1]).toEqual({ n: 7 });
    expect(log[1]![2]).toMatch(/^connection:/);
    client.ws.close();
    other.ws.close();
  });

  it("still calls the deprecated onStateUpdate when onStateChanged is not overridden", async () => {
    const client = await connect(wsUrl(server, "/agents/updated/a"));
    expect(await client.rpc("bump")).toEqual([["onStateUpdate", { n: 1 }, "server"]]);
    client.ws.close();
  });

  it("logs once per class that onStateUpdate is deprecated, and not for onStateChanged", async () => {
    // A class of its own: the warning is once per class per process.
    class Legacy extends Recorder {
      override onStateUpdate(state: { n: number }, source: Connection | "server") {
        this.record("onStateUpdate", state, source);
      }
    }
    const lines: string[] = [];
    const logged = await startServer(
      { Legacy, Changed },
      { logger: pino({ level: "warn" }, { write: (line: string) => lines.push(line) }) },
    );
    try {
      for (const path of ["/agents/legacy/w1", "/agents/legacy/w2", "/agents/changed/w3"]) {
        const client = await connect(wsUrl(logged, path));
        await client.close();
      }
      const warnings = lines.filter((line) => line.includes("deprecated"));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain("Legacy: onStateUpdate is deprecated");
    } finally {
      await logged.stop();
    }
  });

  it("calls only onStateChanged when an agent overrides both", async () => {
    const client = await connect(wsUrl(server, "/agents/both/a"));
    expect(await client.rpc("bump")).toEqual([["onStateChanged", { n: 1 }, "server"]]);
    client.ws.close();
  });

  it("gives a two-parameter onError the connection and the error, and undefined and the error off a connection", async () => {
    const client = await connect(wsUrl(server, "/agents/two-args/a"));
    await client.call("boom");
    expect((await fetch(httpUrl(server, "/agents/two-args/a"))).status).toBe(500);
    expect(await client.rpc("report")).toEqual([
      ["connection string", "on a connection"],
      ["no connection", "off a connection"],
    ]);
    client.ws.close();
  });

  it("gives an onError(error) override the error itself, on a connection or off one", async () => {
    const client = await connect(wsUrl(server, "/agents/one-arg/a"));
    await client.call("boom");
    expect((await fetch(httpUrl(server, "/agents/one-arg/a"))).status).toBe(500);
    expect(await client.rpc("report")).toEqual([["on a connection"], ["off a connection"]]);
    client.ws.close();
  });

  it("gives getCurrentAgent().request inside onConnect and shouldConnectionBeReadonly: the upgrade request", async () => {
    const client = await connect(wsUrl(server, "/agents/requester/a"), {
      headers: { "x-app": "9" },
    });
    expect(client.frames("at-connect")[0]).toEqual({
      type: "at-connect",
      same: true,
      header: "9",
      readonly: false,
    });
    expect(await client.rpc("inCall")).toBe(true);
    client.ws.close();
  });

  it("gives an agent that overrides only onClose itself and the closing connection in getCurrentAgent(), also after an await", async () => {
    Leaver.left = [];
    const client = await connect(wsUrl(server, "/agents/leaver/a"));
    client.ws.close();
    await waitFor(() => Leaver.left.length === 1, "onClose");
    expect(Leaver.left).toEqual([{ self: true, connection: true, afterAwait: true }]);
  });

  it("keeps each caller's connection in getCurrentAgent() after an await and in callbacks, while other connections' frames run", async () => {
    Waiter.later = [];
    const a = await connect(wsUrl(server, "/agents/waiter/a"));
    const b = await connect(wsUrl(server, "/agents/waiter/a"));
    const idA = await a.rpc<string>("idNow");
    const idB = await b.rpc<string>("idNow");
    expect(idA).not.toBe(idB);
    // a waits longest: b's frames, each with its own connection current, run meanwhile.
    const [afterA, afterB, nowB] = await Promise.all([
      a.rpc<string>("idAfter", [40]),
      b.rpc<string>("idAfter", [5]),
      b.rpc<string>("idNow"),
    ]);
    expect([afterA, afterB, nowB]).toEqual([idA, idB, idB]);
    await waitFor(() => Waiter.later.length === 3, "the callbacks");
    for (const { asked, seen } of Waiter.later) expect(seen).toBe(asked);
    a.ws.close();
    b.ws.close();
  });

  it("runs an agent's shouldConnectionBeReadonly alone, with getCurrentAgent() set", async () => {
    const client = await connect(wsUrl(server, "/agents/readonly-only/a"));
    expect(await client.rpc("isReadonly")).toBe(true);
    client.ws.close();
  });

  it("gives getCurrentAgent().request inside onRequest, also after an await", async () => {
    const response = await fetch(httpUrl(server, "/agents/requester/a?x=1"));
    const body = (await response.json()) as { same: boolean; url: string };
    expect(body.same).toBe(true);
    expect(new URL(body.url).search).toBe("?x=1");
  });
});

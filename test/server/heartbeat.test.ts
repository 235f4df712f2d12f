import { afterEach, describe, expect, it } from "vitest";
import { Counter } from "../fixtures/agents.js";
import { startServer, type TestServer, wsUrl } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";
import { connect } from "../helpers/ws-client.js";

describe("heartbeat", () => {
  let server: TestServer | undefined;
  afterEach(async () => {
    await server?.stop();
    server = undefined;
  });

  it("drops a connection that stops answering pings and keeps one that answers", async () => {
    server = await startServer({ Counter }, { heartbeatInterval: 100 });
    const url = wsUrl(server, "/agents/counter/heartbeat");
    const live = await connect(url);
    // A peer whose network vanished never answers: `autoPong: false` stands in for it.
    const gone = await connect(url, { autoPong: false });
    await waitFor(() => server!.stats().connections === 1, "the silent peer dropped", 3_000);
    expect((await gone.closed).code).toBe(1006);
    await new Promise((resolve) => setTimeout(resolve, 350));
    expect(live.ws.readyState).toBe(1);
    expect(await live.rpc("increment", [1])).toBe(1);
    live.ws.close();
  });

  it("can be turned off", async () => {
    server = await startServer({ Counter }, { heartbeatInterval: 0 });
    const silent = await connect(wsUrl(server, "/agents/counter/no-heartbeat"), {
      autoPong: false,
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(silent.ws.readyState).toBe(1);
    silent.ws.close();
  });
});

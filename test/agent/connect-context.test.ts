import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent, type Connection, type ConnectionContext } from "../../src/index.js";
import { startServer, type TestServer, wsUrl } from "../helpers/server.js";
import { connect } from "../helpers/ws-client.js";

/** Sends back what it saw of the upgrade request. */
class Doorman extends Agent {
  override onConnect(connection: Connection, ctx: ConnectionContext) {
    const first = ctx.request;
    const url = new URL(ctx.request.url);
    connection.send(
      JSON.stringify({
        query: url.searchParams.get("room"),
        header: ctx.request.headers.get("x-app-version"),
        sameRequest: first === ctx.request,
      }),
    );
  }
}

describe("onConnect context", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ Doorman });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("gives onConnect a standard Request with the query string and the upgrade headers", async () => {
    const client = await connect(wsUrl(server, "/agents/doorman/a?room=blue"), {
      headers: { "x-app-version": "7.1" },
    });
    expect(client.received[0]).toEqual({ query: "blue", header: "7.1", sameRequest: true });
    client.ws.close();
  });
});

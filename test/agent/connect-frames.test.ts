import { afterAll, beforeAll, expect, it } from "vitest";
import { Counter } from "../fixtures/agents.js";
import { startServer, type TestServer, wsUrl } from "../helpers/server.js";
import { recordServerWrites } from "../helpers/socket-writes.js";
import { connect } from "../helpers/ws-client.js";

let server: TestServer;
let spy: ReturnType<typeof recordServerWrites> | undefined;
beforeAll(async () => {
  server = await startServer({ Counter });
});
afterAll(async () => {
  spy?.restore();
  await server.stop();
});

it("sends identity, state and an empty cf_agent_mcp_servers in that order, in one write to the network with the 101 answer", async () => {
  spy = recordServerWrites(server.port);
  const client = await connect(wsUrl(server, "/agents/counter/frames"));
  await client.waitFor(
    (m) => typeof m === "object" && (m as { type?: string }).type === "cf_agent_mcp_servers",
  );
  spy.restore();
  expect(client.frames().map((frame) => frame.type)).toEqual([
    "cf_agent_identity",
    "cf_agent_state",
    "cf_agent_mcp_servers",
  ]);
  expect(client.frames("cf_agent_mcp_servers")[0]).toEqual({
    type: "cf_agent_mcp_servers",
    mcp: { servers: {}, tools: [], prompts: [], resources: [] },
  });
  // The 101 response and the three frames: one write, corked together.
  expect(spy.writes).toEqual(["writev"]);
  client.ws.close();
});

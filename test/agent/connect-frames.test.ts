import { Socket } from "node:net";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { Counter } from "../fixtures/agents.js";
import { startServer, type TestServer, wsUrl } from "../helpers/server.js";
import { connect } from "../helpers/ws-client.js";

let server: TestServer;
beforeAll(async () => {
  server = await startServer({ Counter });
});
afterAll(async () => {
  vi.restoreAllMocks();
  await server.stop();
});

it("sends identity, state and an empty cf_agent_mcp_servers in that order, in one write to the network with the 101 answer", async () => {
  // Writes by the server's end of a socket (its local port is the server's).
  const writes: string[] = [];
  const record = (kind: string) =>
    function (this: Socket) {
      if (this.localPort === server.port) writes.push(kind);
    };
  const writev = Socket.prototype._writev!;
  const write = Socket.prototype._write;
  vi.spyOn(Socket.prototype, "_writev").mockImplementation(function (this: Socket, ...args) {
    record("writev").call(this);
    return writev.apply(this, args);
  });
  vi.spyOn(Socket.prototype, "_write").mockImplementation(function (this: Socket, ...args) {
    record("write").call(this);
    return write.apply(this, args);
  });
  const client = await connect(wsUrl(server, "/agents/counter/frames"));
  await client.waitFor(
    (m) => typeof m === "object" && (m as { type?: string }).type === "cf_agent_mcp_servers",
  );
  vi.restoreAllMocks();
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
  expect(writes).toEqual(["writev"]);
  client.ws.close();
});

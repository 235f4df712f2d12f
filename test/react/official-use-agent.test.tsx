// @vitest-environment jsdom
import { act, cleanup, render, waitFor } from "@testing-library/react";
import { useAgent } from "agents/react";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import WebSocket from "ws";
import { Counter } from "../fixtures/agents.js";
import { startServer, type TestServer } from "../helpers/server.js";

let server: TestServer;
// As in use-agent.test.tsx: jsdom's own WebSocket fires events of another realm under Vitest.
const jsdomWebSocket = globalThis.WebSocket;
beforeAll(async () => {
  globalThis.WebSocket = WebSocket as unknown as typeof globalThis.WebSocket;
  server = await startServer({ Counter });
});
afterEach(() => cleanup());
afterAll(async () => {
  globalThis.WebSocket = jsdomWebSocket;
  await server.stop();
});

const updates: unknown[] = [];
let identified = false;

/** Mounts the official hook and records what the test looks at. */
function Probe({ port }: { port: number }) {
  const agent = useAgent({
    agent: "Counter",
    name: "mcp",
    host: `127.0.0.1:${port}`,
    onMcpUpdate: (mcp) => updates.push(mcp),
  });
  identified = agent.identified;
  return null;
}

it("the official useAgent's onMcpUpdate fires on connect with the empty list Outpost sends", async () => {
  await act(async () => {
    render(<Probe port={server.port} />);
  });
  await waitFor(() => expect(updates).toHaveLength(1));
  expect(updates[0]).toEqual({ servers: {}, tools: [], prompts: [], resources: [] });
  await waitFor(() => expect(identified).toBe(true));
});

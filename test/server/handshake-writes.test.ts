import { afterEach, describe, expect, it } from "vitest";
import { createKeySet, issueToken, tokenAuth } from "../../src/auth/index.js";
import { Agent } from "../../src/index.js";
import { startServer, wsUrl } from "../helpers/server.js";
import { recordServerWrites } from "../helpers/socket-writes.js";
import { isFrame, RawClient, refused } from "../helpers/ws-client.js";

class Counter extends Agent<unknown, { n: number }> {
  override initialState = { n: 0 };
}

const SECRET = "handshake-writes-secret-0123456789abcdef";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("handshake writes", () => {
  it("an accepted socket gets the 101 answer, identity, state and MCP list in one write", async () => {
    const keys = await createKeySet({ secret: SECRET });
    const server = await startServer({ Counter }, { auth: tokenAuth({ keys, rateLimit: false }) });
    cleanups.push(() => server.stop());
    const token = await issueToken(keys, { sub: "ada", agent: "counter", name: "one" });
    // A cold first connect (the instance starts) and warm ones after it.
    for (let i = 0; i < 3; i++) {
      const spy = recordServerWrites(server.port);
      try {
        const client = new RawClient(wsUrl(server, `/agents/counter/one?token=${token}`));
        await client.waitFor((frame) => isFrame(frame) && frame.type === "cf_agent_mcp_servers");
        expect(client.frames().map((frame) => frame.type)).toEqual([
          "cf_agent_identity",
          "cf_agent_state",
          "cf_agent_mcp_servers",
        ]);
        // Every frame is in, and the server has written to this socket once.
        expect(spy.writes).toEqual(["writev"]);
        await client.close();
      } finally {
        spy.restore();
      }
    }
  });

  it("a refused socket gets the 101 answer and its close in one write, and nothing after", async () => {
    const keys = await createKeySet({ secret: SECRET });
    const other = await createKeySet({ secret: `${SECRET}-other` });
    const server = await startServer({ Counter }, { auth: tokenAuth({ keys, rateLimit: false }) });
    cleanups.push(() => server.stop());
    const forged = await issueToken(other, { sub: "eve", agent: "counter", name: "one" });
    const spy = recordServerWrites(server.port);
    cleanups.push(() => spy.restore());

    const closed = await refused(wsUrl(server, `/agents/counter/one?token=${forged}`));
    expect(closed.code).toBe(4001);
    expect(closed.received).toEqual([]);
    // The client has answered the close, and the server wrote nothing more.
    expect(spy.writes).toEqual(["writev"]);
  });
});

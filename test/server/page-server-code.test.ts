import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verifyJWT } from "../../src/auth/index.js";
import { Agent, type Connection, type ConnectionContext } from "../../src/index.js";
import { startServer, type TestServer, wsUrl } from "../helpers/server.js";
import { connect, RawClient } from "../helpers/ws-client.js";

const JWT_SECRET = "the-apps-own-shared-secret-0123456789";

/**
 * The server-side verification example of Cloudflare's cross-domain authentication page,
 * as written there (types added), with only the import changed.
 */
class SecureAgent extends Agent<{ JWT_SECRET: string }> {
  override async onConnect(connection: Connection, ctx: ConnectionContext) {
    const url = new URL(ctx.request.url);
    const token = url.searchParams.get("token");
    const userId = url.searchParams.get("userId");
    // Verify the token
    if (!token || !(await this.verifyToken(token, userId))) {
      connection.close(4001, "Unauthorized");
      return;
    }
    // Store user info on the connection state
    connection.setState({ userId, authenticated: true });
  }

  async verifyToken(token: string, userId: string | null) {
    try {
      const payload = await verifyJWT(token, this.env.JWT_SECRET);
      return payload.sub === userId && (payload.exp ?? 0) > Date.now() / 1000;
    } catch {
      return false;
    }
  }

  override async onMessage(
    connection: Connection<{ userId: string; authenticated: boolean }>,
    message: string | Buffer,
  ) {
    // Check if connection is authenticated
    if (!connection.state?.authenticated) {
      connection.send(JSON.stringify({ error: "Not authenticated" }));
      return;
    }
    // Process message for authenticated user
    const userId = connection.state.userId;
    connection.send(JSON.stringify({ from: userId, echo: String(message) }));
  }
}

const sign = (sub: string, secret = JWT_SECRET, expiresIn = "5m") =>
  new SignJWT({})
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(new TextEncoder().encode(secret));

describe("the page's server-side verification, with only the import changed", () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startServer({ SecureAgent }, { env: { JWT_SECRET } });
  });

  afterAll(async () => {
    await server?.stop();
  });

  it("accepts a valid token for the user and processes their messages", async () => {
    const token = await sign("alice");
    const client = await connect(
      wsUrl(server, `/agents/secure-agent/room?token=${token}&userId=alice`),
    );
    client.send("hello");
    const reply = await client.waitFor(
      (m) => typeof m === "object" && !Buffer.isBuffer(m) && "echo" in m,
    );
    expect(reply).toEqual({ from: "alice", echo: "hello" });
    client.ws.close();
  });

  it.each([
    ["a token for another user", async () => `${await sign("mallory")}&userId=alice`],
    [
      "a token signed with another secret",
      async () => `${await sign("alice", "someone-elses-secret-0123456789abcdef")}&userId=alice`,
    ],
    ["no token", async () => "&userId=alice"],
  ])(
    "closes %s with 4001 and, unlike on Cloudflare, sends no identity or state first",
    async (_label, query) => {
      const client = new RawClient(
        wsUrl(server, `/agents/secure-agent/room?token=${await query()}`),
      );
      const closed = await client.closed;
      expect(closed).toEqual({ code: 4001, reason: "Unauthorized" });
      expect(client.received).toEqual([]);
    },
  );
});

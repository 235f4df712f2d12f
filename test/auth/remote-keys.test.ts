import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  createKeySet,
  issueToken,
  type KeySet,
  REASONS,
  type RemoteKeySetOptions,
  remoteKeySet,
  tokenAuth,
} from "../../src/auth/index.js";
import { Counter } from "../fixtures/agents.js";
import { startServer, type TestServer, wsUrl } from "../helpers/server.js";
import { connect, refused } from "../helpers/ws-client.js";

/**
 * Property 5: an outage of the identity provider's JWKS is never the client's fault. Over
 * real sockets, against a fake provider that fails in every way a provider does.
 */

type Mode = "ok" | "5xx" | "bad-json" | "not-a-jwks" | "reset" | "hang";

/** A JWKS endpoint that counts fetches and fails on demand. */
class FakeProvider {
  mode: Mode = "ok";
  /** Milliseconds before answering (any mode but hang). */
  delayMs = 0;
  fetches = 0;
  keys!: KeySet;
  readonly #server: Server;

  constructor() {
    this.#server = createServer((req, res) => {
      this.fetches++;
      const answer = () => {
        switch (this.mode) {
          case "ok":
            return res
              .writeHead(200, { "content-type": "application/json" })
              .end(JSON.stringify(this.keys.jwks()));
          case "5xx":
            return res.writeHead(503).end("down for maintenance");
          case "bad-json":
            return res.writeHead(200, { "content-type": "application/json" }).end("{not json");
          case "not-a-jwks":
            return res.writeHead(200, { "content-type": "application/json" }).end("[1,2,3]");
          case "reset":
            return req.socket.destroy();
          case "hang":
            return undefined;
        }
      };
      if (this.delayMs > 0) setTimeout(answer, this.delayMs);
      else answer();
    });
  }

  async start(): Promise<void> {
    this.keys = await createKeySet({ algorithm: "EdDSA" });
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/jwks.json`;
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}

/** A URL on which nothing listens: connection refused. */
async function refusedUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}/jwks.json`;
}

describe("remote JWKS outages (property 5)", () => {
  const provider = new FakeProvider();
  let server: TestServer | undefined;

  beforeAll(() => provider.start());
  afterAll(() => provider.stop());
  afterEach(async () => {
    await server?.stop();
    server = undefined;
    provider.mode = "ok";
    provider.delayMs = 0;
    provider.fetches = 0;
  });

  /** A server whose tokens are verified with the provider's published keys. */
  async function serveWith(url: string, options: Partial<RemoteKeySetOptions> = {}) {
    server = await startServer(
      { Counter },
      {
        auth: tokenAuth({
          keys: remoteKeySet(url, { algorithms: ["EdDSA"], timeoutDuration: 300, ...options }),
          // One counted failure would lock the address out: outages must count none.
          rateLimit: { failures: 1, windowMs: 60_000 },
        }),
      },
    );
    return server;
  }

  const token = () => issueToken(provider.keys, { sub: "ada", agent: "counter", name: "room" });
  const url = (s: TestServer, t: string) => wsUrl(s, `/agents/counter/room?token=${t}`);

  const outages: Array<[string, Mode | "refused"]> = [
    ["connection refused", "refused"],
    ["connection reset", "reset"],
    ["timeout", "hang"],
    ["HTTP 5xx", "5xx"],
    ["bad JSON", "bad-json"],
    ["JSON that is not a key set", "not-a-jwks"],
  ];

  it.each(outages)(
    "an identity-provider outage (%s) is a transient refusal, never token_malformed, never counted against the address",
    async (_name, mode) => {
      const keysUrl = mode === "refused" ? await refusedUrl() : provider.url;
      if (mode !== "refused") provider.mode = mode;
      const s = await serveWith(keysUrl, { failureCooldown: 0 });
      const expected = REASONS.keys_unavailable;
      for (let i = 0; i < 3; i++) {
        const closed = await refused(url(s, await token()));
        expect(closed.code).toBe(expected.closeCode);
        expect(closed.reason).toMatch(/^token signing keys unavailable; retry in \d+s$/);
        expect(closed.received).toEqual([]);
      }
      expect(s.stats().refusals).toEqual({ keys_unavailable: 3 });
      // The address was never counted: once the keys can be read, the same client gets in.
      if (mode === "refused") return;
      provider.mode = "ok";
      const client = await connect(url(s, await token()));
      await client.close();
    },
  );

  it("keeps at most one key fetch in flight, and none during the cooldown after a failure", async () => {
    provider.mode = "5xx";
    provider.delayMs = 300;
    const s = await serveWith(provider.url, { failureCooldown: 60_000 });
    const first = await Promise.all(
      Array.from({ length: 20 }, async () => refused(url(s, await token()))),
    );
    expect(first.map((c) => c.code)).toEqual(Array(20).fill(REASONS.keys_unavailable.closeCode));
    expect(provider.fetches).toBe(1);
    // Within the cooldown nothing is fetched, and the hint says how long is left.
    const later = await Promise.all(
      Array.from({ length: 10 }, async () => refused(url(s, await token()))),
    );
    expect(provider.fetches).toBe(1);
    for (const closed of later) {
      const seconds = Number(/retry in (\d+)s/.exec(closed.reason)?.[1]);
      expect(seconds).toBeGreaterThan(1);
      expect(seconds).toBeLessThanOrEqual(60);
    }
  });

  it("keeps verifying with the last good keys while a refresh of them fails", async () => {
    const s = await serveWith(provider.url, { cacheMaxAge: 50, failureCooldown: 60_000 });
    const before = await connect(url(s, await token()));
    await before.close();
    expect(provider.fetches).toBe(1);
    provider.mode = "5xx";
    await new Promise((resolve) => setTimeout(resolve, 120));
    // The cache is stale, the refresh fails: the keys fetched before still verify.
    const during = await connect(url(s, await token()));
    await during.close();
    expect(provider.fetches).toBe(2);
    const again = await connect(url(s, await token()));
    await again.close();
    expect(provider.fetches).toBe(2);
    // A kid the last good keys lack may be one published since: transient too, while down.
    const stranger = await issueToken(await createKeySet({ algorithm: "EdDSA" }), {
      sub: "eve",
      agent: "counter",
      name: "room",
    });
    const closed = await refused(url(s, stranger));
    expect(closed.code).toBe(REASONS.keys_unavailable.closeCode);
  });
});

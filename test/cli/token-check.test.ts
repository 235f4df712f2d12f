import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadKeySet, tokenAuth } from "../../src/auth/index.js";
import { keysCommand } from "../../src/cli/keys.js";
import { tokenCommand } from "../../src/cli/token.js";
import { Counter } from "../fixtures/agents.js";
import { bufferIo } from "../helpers/io.js";
import { startServer } from "../helpers/server.js";
import { refused } from "../helpers/ws-client.js";

let dir: string;
let file: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "outpost-token-check-"));
  file = join(dir, "keys.json");
  await keysCommand(["generate", "--out", file], bufferIo().io);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function token(...args: string[]) {
  const run = bufferIo();
  const code = await tokenCommand(
    ["--sub", "alice", "--name", "lobby", "--keys", file, ...args],
    run.io,
  );
  return { code, token: run.stdout().trim(), stderr: run.stderr() };
}

describe("outpost token checks what the server will do with the token", () => {
  it("warns when the TTL is above the default maximum lifetime, which a default server refuses", async () => {
    const long = await token("--agent", "chat-room", "--ttl", "7200");
    expect(long.code).toBe(0);
    expect(long.stderr).toMatch(
      /^warning: a server with tokenAuth's default settings refuses this token \(4001 /,
    );
    expect(long.stderr).toContain("lifetime");

    // And the warning is true: a server with the defaults does refuse it.
    const keys = await loadKeySet(file);
    const server = await startServer({ Counter }, { auth: tokenAuth({ keys, rateLimit: false }) });
    try {
      const countToken = await token("--agent", "counter", "--ttl", "7200");
      const closed = await refused(
        `ws://127.0.0.1:${server.port}/agents/counter/lobby?token=${countToken.token}`,
      );
      expect(closed.code).toBe(4001);
    } finally {
      await server.stop();
    }

    const fine = await token("--agent", "chat-room", "--ttl", "3600");
    expect(fine.stderr).toBe("");
  });

  it("turns a class name into its URL name, and says so", async () => {
    const issued = await token("--agent", "ChatRoom");
    expect(issued.code).toBe(0);
    expect(decodeJwt(issued.token).agent).toBe("chat-room");
    expect(issued.stderr).toBe(
      'note: --agent ChatRoom is a class name; URLs use "chat-room", so the token names that\n',
    );
    expect(decodeJwt((await token("--agent", "Chat*")).token).agent).toBe("chat*");
    expect(decodeJwt((await token("--agent", "*")).token).agent).toBe("*");
  });

  it("warns about scopes no server knows", async () => {
    const issued = await token("--agent", "chat-room", "--scope", "connect rpc writes");
    expect(issued.code).toBe(0);
    expect(issued.stderr).toContain(
      'warning: unknown scope "writes" grants nothing (known: connect rpc',
    );
    expect(decodeJwt(issued.token).scope).toBe("connect rpc writes");
  });

  it("stays quiet for a token a default server accepts", async () => {
    const issued = await token("--agent", "chat-room");
    expect(issued.stderr).toBe("");
  });
});

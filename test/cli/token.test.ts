import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeJwt } from "jose";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createKeySet, loadKeySet, verifyToken } from "../../src/auth/index.js";
import { keysCommand } from "../../src/cli/keys.js";
import { tokenCommand } from "../../src/cli/token.js";
import { bufferIo } from "../helpers/io.js";

const SECRET_ENV = "OUTPOST_TEST_TOKEN_SECRET";
const SECRET = "a-test-secret-that-is-long-enough-1234";
let dir: string;
let file: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "outpost-cli-token-"));
  file = join(dir, "keys.json");
  await keysCommand(["generate", "--out", file], bufferIo().io);
});

afterEach(async () => {
  delete process.env[SECRET_ENV];
  await rm(dir, { recursive: true, force: true });
});

describe("outpost token", () => {
  it("prints a token that verifies for the named agent and instance", async () => {
    const run = bufferIo();
    const code = await tokenCommand(
      ["--sub", "alice", "--agent", "chat", "--name", "room-1", "--keys", file],
      run.io,
    );
    expect(code).toBe(0);
    const token = run.stdout().trim();
    const claims = await verifyToken(await loadKeySet(file), token, {
      agent: "chat",
      name: "room-1",
    });
    expect(claims.sub).toBe("alice");
    expect(claims.exp! - claims.iat!).toBe(300);
  });

  it("sets the lifetime and scope", async () => {
    const run = bufferIo();
    await tokenCommand(
      [
        "--sub",
        "a",
        "--agent",
        "chat",
        "--name",
        "*",
        "--ttl",
        "60",
        "--scope",
        "rpc state:write",
        "--keys",
        file,
      ],
      run.io,
    );
    const payload = decodeJwt(run.stdout().trim());
    expect(payload.exp! - payload.iat!).toBe(60);
    expect(payload.scope).toBe("rpc state:write");
    expect(payload.name).toBe("*");
  });

  it("signs HS256 with a secret from the environment", async () => {
    process.env[SECRET_ENV] = SECRET;
    const run = bufferIo();
    expect(
      await tokenCommand(
        ["--sub", "a", "--agent", "chat", "--name", "r", "--secret-env", SECRET_ENV],
        run.io,
      ),
    ).toBe(0);
    const keys = await createKeySet({ secret: SECRET });
    await expect(
      verifyToken(keys, run.stdout().trim(), { agent: "chat", name: "r" }),
    ).resolves.toBeTruthy();
  });

  it("refuses missing or bad options with exit code 2 and says why", async () => {
    const cases: [string[], RegExp][] = [
      [["--agent", "chat", "--name", "r", "--keys", file], /--sub/],
      [["--sub", "a", "--name", "r", "--keys", file], /--agent/],
      [["--sub", "a", "--agent", "chat", "--name", "r", "--ttl", "0", "--keys", file], /--ttl/],
      [["--sub", "a", "--agent", "chat", "--name", "r", "--ttl", "5m", "--keys", file], /--ttl/],
      [
        ["--sub", "a", "--agent", "chat", "--name", "r", "--keys", file, "--secret-env", "X"],
        /not both/,
      ],
      [["--sub", "a", "--agent", "chat", "--name", "r", "--frobnicate"], /frobnicate/],
    ];
    for (const [argv, message] of cases) {
      const run = bufferIo();
      expect(await tokenCommand(argv, run.io)).toBe(2);
      expect(run.stderr()).toMatch(message);
      expect(run.stdout()).toBe("");
    }
  });

  it("fails with exit code 1 for a missing key file, an unset or short secret", async () => {
    const missing = bufferIo();
    expect(
      await tokenCommand(
        ["--sub", "a", "--agent", "c", "--name", "r", "--keys", join(dir, "none.json")],
        missing.io,
      ),
    ).toBe(1);
    expect(missing.stderr()).toMatch(/keys generate/);

    const unset = bufferIo();
    expect(
      await tokenCommand(
        ["--sub", "a", "--agent", "c", "--name", "r", "--secret-env", SECRET_ENV],
        unset.io,
      ),
    ).toBe(1);
    expect(unset.stderr()).toMatch(/not set/);

    process.env[SECRET_ENV] = "short";
    const short = bufferIo();
    expect(
      await tokenCommand(
        ["--sub", "a", "--agent", "c", "--name", "r", "--secret-env", SECRET_ENV],
        short.io,
      ),
    ).toBe(1);
    expect(short.stderr()).toMatch(/32 bytes/);
  });

  it("prints help", async () => {
    const run = bufferIo();
    expect(await tokenCommand(["--help"], run.io)).toBe(0);
    expect(run.stdout()).toMatch(/--secret-env/);
  });
});

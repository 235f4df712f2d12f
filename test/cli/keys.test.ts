import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { issueToken, loadKeySet, verifyToken } from "../../src/auth/index.js";
import { keysCommand } from "../../src/cli/keys.js";
import { bufferIo } from "../helpers/io.js";

const ROOM = { agent: "chat", name: "room-1" };
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "outpost-cli-keys-"));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("outpost keys generate", () => {
  it("writes an owner-only EdDSA key file and prints its kid", async () => {
    const out = join(dir, "keys.json");
    const run = bufferIo();
    expect(await keysCommand(["generate", "--out", out], run.io)).toBe(0);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    const keys = await loadKeySet(out);
    expect(keys.signingKey().algorithm).toBe("EdDSA");
    expect(run.stdout()).toContain(keys.signingKid!);
    expect(run.stderr()).toBe("");
  });

  it.each(["ES256", "RS256"])("generates %s keys on request", async (algorithm) => {
    const out = join(dir, "keys.json");
    expect(
      await keysCommand(["generate", "--algorithm", algorithm, "--out", out], bufferIo().io),
    ).toBe(0);
    expect((await loadKeySet(out)).signingKey().algorithm).toBe(algorithm);
  });

  it("never overwrites an existing key file without --force", async () => {
    const out = join(dir, "keys.json");
    await writeFile(out, "precious");
    const run = bufferIo();
    expect(await keysCommand(["generate", "--out", out], run.io)).toBe(1);
    expect(run.stderr()).toMatch(/already exists/);
    expect(await readFile(out, "utf8")).toBe("precious");
    expect(await keysCommand(["generate", "--out", out, "--force"], bufferIo().io)).toBe(0);
    expect((await loadKeySet(out)).kids).toHaveLength(1);
  });

  it("refuses an unknown algorithm, option or action with exit code 2", async () => {
    for (const argv of [
      ["generate", "--algorithm", "HS256"],
      ["generate", "--algorithm", "none"],
      ["generate", "--bogus"],
      ["destroy"],
      [],
    ]) {
      const run = bufferIo();
      expect(await keysCommand(argv, run.io)).toBe(2);
      expect(run.stderr()).not.toBe("");
    }
  });

  it("prints help", async () => {
    const run = bufferIo();
    expect(await keysCommand(["--help"], run.io)).toBe(0);
    expect(run.stdout()).toMatch(/generate/);
    expect(run.stdout()).toMatch(/rotate/);
  });
});

describe("outpost keys rotate", () => {
  it("adds a signing key and keeps the old one verifying", async () => {
    const file = join(dir, "keys.json");
    await keysCommand(["generate", "--out", file], bufferIo().io);
    const before = await loadKeySet(file);
    const oldToken = await issueToken(before, { ...ROOM, sub: "u" });

    const run = bufferIo();
    expect(await keysCommand(["rotate", "--file", file], run.io)).toBe(0);
    const after = await loadKeySet(file);
    expect(after.kids).toHaveLength(2);
    expect(after.kids[0]).toBe(before.signingKid);
    expect(after.signingKid).not.toBe(before.signingKid);
    expect(run.stdout()).toContain(after.signingKid!);
    expect(run.stdout()).toContain(before.signingKid!);
    await expect(verifyToken(after, oldToken, ROOM)).resolves.toBeTruthy();
    expect((await stat(file)).mode & 0o777).toBe(0o600);
  });

  it("rotates to another algorithm and retires the old key", async () => {
    const file = join(dir, "keys.json");
    await keysCommand(["generate", "--out", file], bufferIo().io);
    const oldKid = (await loadKeySet(file)).signingKid!;
    expect(
      await keysCommand(["rotate", "--file", file, "--algorithm", "ES256"], bufferIo().io),
    ).toBe(0);
    expect((await loadKeySet(file)).signingKey().algorithm).toBe("ES256");
    expect(await keysCommand(["retire", "--file", file, "--kid", oldKid], bufferIo().io)).toBe(0);
    expect((await loadKeySet(file)).kids).not.toContain(oldKid);
    const run = bufferIo();
    expect(await keysCommand(["retire", "--file", file, "--kid", oldKid], run.io)).toBe(1);
    expect(run.stderr()).toMatch(/no key/);
  });

  it("fails clearly when there is no key file", async () => {
    const run = bufferIo();
    expect(await keysCommand(["rotate", "--file", join(dir, "missing.json")], run.io)).toBe(1);
    expect(run.stderr()).toMatch(/cannot read key file/);
  });
});

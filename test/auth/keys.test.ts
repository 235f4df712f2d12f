import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeProtectedHeader, exportPKCS8, exportSPKI, generateKeyPair } from "jose";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  AuthError,
  createKeySet,
  issueToken,
  type KeySet,
  loadKeySet,
  remoteKeySet,
  saveKeySet,
  verifyToken,
} from "../../src/auth/index.js";
import { claims, signRaw } from "./forge.js";

const ROOM = { agent: "chat", name: "room-1" };
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

async function codeOf(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => "accepted",
    (error: unknown) => {
      expect(error).toBeInstanceOf(AuthError);
      return (error as AuthError).code;
    },
  );
}

function expectNoPrivateMaterial(jwks: { keys: object[] }): void {
  for (const key of jwks.keys) {
    for (const member of PRIVATE_MEMBERS) expect(key).not.toHaveProperty(member);
  }
}

describe("createKeySet", () => {
  it("generates an Ed25519 pair by default, with a kid and the one algorithm EdDSA", async () => {
    const keys = await createKeySet();
    expect(keys.algorithms).toEqual(["EdDSA"]);
    expect(keys.kids).toHaveLength(1);
    expect(keys.signingKid).toBe(keys.kids[0]);
    // Hex, so a kid never starts with "-" and reads as an option on the command line.
    expect(keys.signingKid).toMatch(/^[0-9a-f]{16}$/);
    expect(keys.signingKey().algorithm).toBe("EdDSA");
    const [jwk] = keys.jwks().keys;
    expect(jwk).toMatchObject({
      kty: "OKP",
      crv: "Ed25519",
      kid: keys.signingKid,
      alg: "EdDSA",
      use: "sig",
    });
  });

  it.each(["ES256", "RS256"] as const)(
    "generates a %s pair that signs and verifies",
    async (algorithm) => {
      const keys = await createKeySet({ algorithm });
      const token = await issueToken(keys, { ...ROOM, sub: "u" });
      expect(decodeProtectedHeader(token).alg).toBe(algorithm);
      expect((await verifyToken(keys, token, ROOM)).sub).toBe("u");
    },
  );

  it("makes an HS256-only set from a shared secret and publishes nothing for it", async () => {
    const keys = await createKeySet({ secret: "s".repeat(32) });
    expect(keys.algorithms).toEqual(["HS256"]);
    expect(keys.jwks()).toEqual({ keys: [] });
    expect(keys.export().keys[0]).toMatchObject({ kty: "oct", alg: "HS256" });
  });

  it("imports a shared secret once, not on every verification", async () => {
    const keys = await createKeySet({ secret: "s".repeat(32) });
    const token = await issueToken(keys, { ...ROOM, sub: "u" });
    const importKey = vi.spyOn(crypto.subtle, "importKey");
    try {
      for (let i = 0; i < 5; i++) await verifyToken(keys, token, ROOM);
      await issueToken(keys, { ...ROOM, sub: "u" });
      expect(importKey).not.toHaveBeenCalled();
    } finally {
      importKey.mockRestore();
    }
  });

  it("derives the same kid from the same secret in every process", async () => {
    const a = await createKeySet({ secret: "s".repeat(32) });
    const b = await createKeySet({ secret: new TextEncoder().encode("s".repeat(32)) });
    expect(a.signingKid).toBe(b.signingKid);
    const token = await issueToken(a, { ...ROOM, sub: "u" });
    await expect(verifyToken(b, token, ROOM)).resolves.toBeTruthy();
  });

  it("refuses a secret shorter than 32 bytes and unknown algorithms", async () => {
    await expect(createKeySet({ secret: "too-short" })).rejects.toThrow(/32 bytes/);
    await expect(createKeySet({ algorithm: "HS256" as never })).rejects.toThrow(TypeError);
    await expect(createKeySet({ algorithm: "none" as never })).rejects.toThrow(TypeError);
  });

  it("imports a PKCS#8 private key (signs) or an SPKI public key (verifies only)", async () => {
    const pair = await generateKeyPair("ES256", { extractable: true });
    const signing = await createKeySet({
      pem: await exportPKCS8(pair.privateKey),
      algorithm: "ES256",
      kid: "pem-1",
    });
    const verifying = await createKeySet({
      pem: await exportSPKI(pair.publicKey),
      algorithm: "ES256",
      kid: "pem-1",
    });
    expect(verifying.signingKid).toBeUndefined();
    expect(() => verifying.signingKey()).toThrow(TypeError);
    const token = await issueToken(signing, { ...ROOM, sub: "u" });
    expect(decodeProtectedHeader(token).kid).toBe("pem-1");
    await expect(verifyToken(verifying, token, ROOM)).resolves.toBeTruthy();
    expectNoPrivateMaterial(signing.jwks());
    await expect(createKeySet({ pem: "not a pem", algorithm: "ES256" })).rejects.toThrow(TypeError);
  });

  it("imports a JWKS: private keys sign (the last one), public keys only verify", async () => {
    const older = await createKeySet({ algorithm: "RS256" });
    const newer = await createKeySet();
    const keys = await createKeySet({
      jwks: { keys: [...older.export().keys, ...newer.export().keys] },
    });
    expect(keys.kids).toEqual([older.signingKid, newer.signingKid]);
    expect(keys.signingKid).toBe(newer.signingKid);
    await expect(
      verifyToken(keys, await issueToken(older, { ...ROOM, sub: "u" }), ROOM),
    ).resolves.toBeTruthy();

    const publicOnly = await createKeySet({ jwks: newer.jwks() });
    expect(publicOnly.signingKid).toBeUndefined();
    await expect(
      verifyToken(publicOnly, await issueToken(newer, { ...ROOM, sub: "u" }), ROOM),
    ).resolves.toBeTruthy();
  });

  it("refuses a JWKS with duplicate kids, an empty one, or a secret with another alg", async () => {
    const keys = await createKeySet();
    await expect(
      createKeySet({ jwks: { keys: [...keys.export().keys, ...keys.export().keys] } }),
    ).rejects.toThrow(/duplicate/);
    await expect(createKeySet({ jwks: { keys: [] } })).rejects.toThrow(TypeError);
    await expect(
      createKeySet({ jwks: { keys: [{ kty: "oct", k: "c".repeat(43), alg: "RS256" }] } }),
    ).rejects.toThrow(TypeError);
  });
});

describe("rotation", () => {
  it("signs with the newest key; the old key verifies until retired", async () => {
    const keys = await createKeySet();
    const oldKid = keys.signingKid!;
    const oldToken = await issueToken(keys, { ...ROOM, sub: "u" });
    const newKid = await keys.rotate();
    expect(newKid).not.toBe(oldKid);
    expect(keys.signingKid).toBe(newKid);
    expect(keys.kids).toEqual([oldKid, newKid]);
    const newToken = await issueToken(keys, { ...ROOM, sub: "u" });
    expect(decodeProtectedHeader(newToken).kid).toBe(newKid);

    await expect(verifyToken(keys, oldToken, ROOM)).resolves.toBeTruthy();
    expect(keys.retire(oldKid)).toBe(true);
    expect(await codeOf(verifyToken(keys, oldToken, ROOM))).toBe("unknown_key");
    await expect(verifyToken(keys, newToken, ROOM)).resolves.toBeTruthy();
    expect(keys.retire("no-such-kid")).toBe(false);
  });

  it("refuses to retire the signing key while an older one would take over", async () => {
    const keys = await createKeySet();
    const newKid = await keys.rotate();
    expect(() => keys.retire(newKid)).toThrow(/rotate/);
  });

  it("rotates to another algorithm, and an HS256 set to a new secret", async () => {
    const keys = await createKeySet();
    await keys.rotate({ algorithm: "ES256" });
    expect(keys.signingKey().algorithm).toBe("ES256");
    expect(keys.algorithms).toEqual(["EdDSA", "ES256"]);

    const shared = await createKeySet({ secret: "s".repeat(32) });
    const before = shared.signingKid;
    const kid = await shared.rotate({ secret: "t".repeat(32) });
    expect(shared.signingKey().algorithm).toBe("HS256");
    expect(kid).not.toBe(before);
    const random = await shared.rotate();
    expect(shared.signingKid).toBe(random);
    expect(shared.export().keys).toHaveLength(3);
  });

  it("survives a save and load with every key and the same signer", async () => {
    const dir = await mkdtemp(join(tmpdir(), "outpost-keys-"));
    try {
      const keys = await createKeySet();
      await keys.rotate({ algorithm: "RS256" });
      const token = await issueToken(keys, { ...ROOM, sub: "u" });
      const path = join(dir, "keys.json");
      await saveKeySet(path, keys);
      expect((await stat(path)).mode & 0o777).toBe(0o600);
      const loaded = await loadKeySet(path);
      expect(loaded.kids).toEqual(keys.kids);
      expect(loaded.signingKid).toBe(keys.signingKid);
      await expect(verifyToken(loaded, token, ROOM)).resolves.toBeTruthy();
      await expect(
        verifyToken(keys, await issueToken(loaded, { ...ROOM, sub: "u" }), ROOM),
      ).resolves.toBeTruthy();

      // Overwriting keeps the owner-only mode.
      await saveKeySet(path, loaded);
      expect((await stat(path)).mode & 0o777).toBe(0o600);
      expect(JSON.parse(await readFile(path, "utf8")).keys).toHaveLength(2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("reports a missing or corrupt key file clearly", async () => {
    const dir = await mkdtemp(join(tmpdir(), "outpost-keys-"));
    try {
      await expect(loadKeySet(join(dir, "nope.json"))).rejects.toThrow(/cannot read key file/);
      await writeFile(join(dir, "bad.json"), "{");
      await expect(loadKeySet(join(dir, "bad.json"))).rejects.toThrow(/not valid JSON/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("jwks()", () => {
  it("has no private material for any key type, while export() keeps it", async () => {
    const keys = await createKeySet({ algorithm: "RS256" });
    await keys.rotate({ algorithm: "ES256" });
    await keys.rotate({ algorithm: "EdDSA" });
    await keys.rotate({ secret: "s".repeat(32) });
    const published = keys.jwks();
    expect(published.keys).toHaveLength(3);
    expectNoPrivateMaterial(published);
    expect(JSON.stringify(published)).not.toContain(
      Buffer.from("s".repeat(32)).toString("base64url"),
    );
    const exported = keys.export().keys;
    expect(exported.filter((k) => "d" in k)).toHaveLength(3);
    expect(exported.filter((k) => "k" in k)).toHaveLength(1);
  });

  it("returns copies that cannot change the set", async () => {
    const keys = await createKeySet();
    const jwk = keys.jwks().keys[0]!;
    jwk.kid = "changed";
    expect(keys.jwks().keys[0]!.kid).toBe(keys.signingKid);
  });
});

describe("remoteKeySet", () => {
  let server: Server;
  let url: string;
  let served: { keys: object[] } = { keys: [] };
  let fetches = 0;
  const issuer = { keys: undefined as unknown as KeySet };

  beforeAll(async () => {
    issuer.keys = await createKeySet({ algorithm: "RS256" });
    server = createServer((req, res) => {
      fetches++;
      if (req.url !== "/.well-known/jwks.json") return void res.writeHead(404).end();
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(served));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  afterEach(() => {
    fetches = 0;
  });

  it("verifies tokens from an identity provider's JWKS served over HTTP", async () => {
    served = issuer.keys.jwks();
    const keys = remoteKeySet(url, { algorithms: ["RS256"] });
    const token = await issueToken(issuer.keys, { ...ROOM, sub: "idp-user" });
    expect((await verifyToken(keys, token, ROOM)).sub).toBe("idp-user");
    await verifyToken(keys, await issueToken(issuer.keys, { ...ROOM, sub: "again" }), ROOM);
    expect(fetches).toBe(1);
  });

  it("refuses algorithms it was not told to accept and keys it does not have", async () => {
    served = issuer.keys.jwks();
    const keys = remoteKeySet(url, { algorithms: ["RS256"], cooldownDuration: 0 });
    const ed = await createKeySet();
    expect(await codeOf(verifyToken(keys, await issueToken(ed, { ...ROOM, sub: "u" }), ROOM))).toBe(
      "algorithm_not_allowed",
    );
    const unknown = await signRaw(issuer.keys, claims(), { kid: "not-published" });
    expect(await codeOf(verifyToken(keys, unknown, ROOM))).toBe("unknown_key");
    const hs = await createKeySet({ secret: "s".repeat(32), kid: issuer.keys.signingKid });
    expect(await codeOf(verifyToken(keys, await issueToken(hs, { ...ROOM, sub: "u" }), ROOM))).toBe(
      "algorithm_not_allowed",
    );
  });

  it("picks up a rotated key from the provider", async () => {
    const provider = await createKeySet({ algorithm: "RS256" });
    served = provider.jwks();
    const keys = remoteKeySet(url, { algorithms: ["RS256"], cooldownDuration: 0 });
    await verifyToken(keys, await issueToken(provider, { ...ROOM, sub: "u" }), ROOM);
    await provider.rotate();
    served = provider.jwks();
    await expect(
      verifyToken(keys, await issueToken(provider, { ...ROOM, sub: "u" }), ROOM),
    ).resolves.toBeTruthy();
  });

  it("refuses with keys_unavailable (transient, 1013) when the provider is unreachable", async () => {
    const keys = remoteKeySet("http://127.0.0.1:1/jwks.json", {
      algorithms: ["RS256"],
      timeoutDuration: 500,
    });
    expect(
      await codeOf(verifyToken(keys, await issueToken(issuer.keys, { ...ROOM, sub: "u" }), ROOM)),
    ).toBe("keys_unavailable");
  });

  it("cannot be configured without algorithms, with none, or with a shared-secret algorithm", () => {
    expect(() => remoteKeySet(url, { algorithms: [] })).toThrow(TypeError);
    expect(() => remoteKeySet(url, { algorithms: ["none"] })).toThrow(TypeError);
    expect(() => remoteKeySet(url, { algorithms: ["HS256"] })).toThrow(TypeError);
  });
});

import { decodeJwt, decodeProtectedHeader, exportJWK, exportSPKI, SignJWT } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import {
  AuthError,
  type AuthErrorCode,
  createKeySet,
  issueToken,
  type KeySet,
  MemoryReplayStore,
  type VerificationKeys,
  type VerifyTokenOptions,
  verifyJWT,
  verifyToken,
} from "../../src/auth/index.js";
import { assemble, b64url, claims, now, signRaw } from "./forge.js";

const SECRET = "a-shared-secret-of-at-least-32-bytes!";
const ROOM = { agent: "chat", name: "room-1" };

let ed: KeySet;
let hs: KeySet;

beforeAll(async () => {
  ed = await createKeySet();
  hs = await createKeySet({ secret: SECRET });
});

async function refusal(
  keys: VerificationKeys,
  token: string,
  options: Partial<VerifyTokenOptions> = {},
): Promise<AuthError> {
  try {
    await verifyToken(keys, token, { ...ROOM, ...options });
  } catch (error) {
    expect(error).toBeInstanceOf(AuthError);
    return error as AuthError;
  }
  throw new Error("token was accepted");
}

async function expectRefused(
  keys: VerificationKeys,
  token: string,
  code: AuthErrorCode,
  closeCode: number,
  options: Partial<VerifyTokenOptions> = {},
): Promise<AuthError> {
  const error = await refusal(keys, token, options);
  expect({ code: error.code, closeCode: error.closeCode }).toEqual({ code, closeCode });
  return error;
}

describe("issueToken", () => {
  it("issues a compact JWT with exp, iat, nbf, jti, aud, iss, agent, name and a 5 minute default lifetime", async () => {
    const token = await issueToken(ed, { sub: "user-1", agent: "chat", name: "room-1" });
    const payload = decodeJwt(token);
    expect(payload).toMatchObject({ sub: "user-1", agent: "chat", name: "room-1" });
    expect(payload.aud).toBe("outpost");
    expect(payload.iss).toBe("outpost");
    expect(payload.exp! - payload.iat!).toBe(300);
    expect(payload.nbf).toBe(payload.iat);
    expect(payload.jti).toMatch(/^[0-9a-f-]{36}$/);
    expect(payload.scope).toBeUndefined();
    expect(decodeProtectedHeader(token)).toEqual({ alg: "EdDSA", kid: ed.signingKid, typ: "JWT" });
  });

  it("gives every token its own random jti", async () => {
    const a = decodeJwt(await issueToken(ed, { sub: "u", agent: "a", name: "n" }));
    const b = decodeJwt(await issueToken(ed, { sub: "u", agent: "a", name: "n" }));
    expect(a.jti).not.toBe(b.jti);
  });

  it("writes scope as a space-separated string and reads it back as an array", async () => {
    const token = await issueToken(ed, { ...ROOM, sub: "u", scope: ["connect", "rpc"], ttl: 60 });
    expect(decodeJwt(token).scope).toBe("connect rpc");
    const verified = await verifyToken(ed, token, ROOM);
    expect(verified.scope).toEqual(["connect", "rpc"]);
    expect(verified.exp! - verified.iat!).toBe(60);
  });

  it("treats a token without scope as full access", async () => {
    const token = await issueToken(ed, { ...ROOM, sub: "u" });
    expect((await verifyToken(ed, token, ROOM)).scope).toEqual([
      "connect",
      "rpc",
      "state:write",
      "message",
      "http",
    ]);
  });

  it("keeps registered claims when extra claims try to override them", async () => {
    const token = await issueToken(ed, {
      ...ROOM,
      sub: "u",
      claims: { role: "admin", exp: 9_999_999_999, sub: "someone-else" },
    });
    const verified = await verifyToken(ed, token, ROOM);
    expect(verified.role).toBe("admin");
    expect(verified.sub).toBe("u");
    expect(verified.exp! - verified.iat!).toBe(300);
  });

  it("refuses to sign without sub, agent or name, or with a bad ttl or scope", async () => {
    await expect(issueToken(ed, { sub: "", agent: "a", name: "n" })).rejects.toThrow(TypeError);
    await expect(issueToken(ed, { sub: "u", agent: "", name: "n" })).rejects.toThrow(TypeError);
    await expect(issueToken(ed, { sub: "u", agent: "a", name: "n", ttl: 0 })).rejects.toThrow(
      TypeError,
    );
    await expect(
      issueToken(ed, { sub: "u", agent: "a", name: "n", scope: ['rpc"'] }),
    ).rejects.toThrow(TypeError);
  });

  it("signs HS256 tokens with a shared secret", async () => {
    const token = await issueToken(hs, { ...ROOM, sub: "u" });
    expect(decodeProtectedHeader(token).alg).toBe("HS256");
    expect((await verifyToken(hs, token, ROOM)).sub).toBe("u");
  });
});

describe("verifyToken refusal matrix", () => {
  it("refuses alg none", async () => {
    const token = assemble({ alg: "none", typ: "JWT" }, claims());
    await expectRefused(ed, token, "algorithm_not_allowed", 4001);
    const withKid = assemble({ alg: "none", kid: ed.signingKid }, claims());
    await expectRefused(ed, withKid, "algorithm_not_allowed", 4001);
    await expectRefused(hs, token, "algorithm_not_allowed", 4001);
  });

  it("refuses an HS256 token signed with the bytes of an RS256 or EC public key (algorithm confusion)", async () => {
    for (const algorithm of ["RS256", "ES256"] as const) {
      const keys = await createKeySet({ algorithm });
      const publicJwk = keys.jwks().keys[0]!;
      const { importJWK } = await import("jose");
      const spki = await exportSPKI(
        (await importJWK(publicJwk, algorithm, { extractable: true })) as CryptoKey,
      );
      for (const hmacKey of [
        new TextEncoder().encode(spki),
        new TextEncoder().encode(JSON.stringify(publicJwk)),
      ]) {
        const token = await new SignJWT(claims())
          .setProtectedHeader({ alg: "HS256", kid: keys.signingKid })
          .sign(hmacKey);
        await expectRefused(keys, token, "algorithm_not_allowed", 4001);
      }
    }
  });

  it("refuses a token whose alg is not the one of the key its kid names, even when the set has that alg", async () => {
    // A set with both an HS256 secret and an RS256 pair: only the kid→alg binding stops confusion.
    const rs = await createKeySet({ algorithm: "RS256" });
    const mixed = await createKeySet({
      jwks: { keys: [...hs.export().keys, ...rs.export().keys] },
    });
    expect(mixed.algorithms).toEqual(expect.arrayContaining(["HS256", "RS256"]));
    const rsKid = rs.signingKid!;
    const publicJwk = await exportJWK(
      (await import("jose").then((j) =>
        j.importJWK(rs.jwks().keys[0]!, "RS256", { extractable: true }),
      )) as CryptoKey,
    );
    const token = await new SignJWT(claims())
      .setProtectedHeader({ alg: "HS256", kid: rsKid })
      .sign(new TextEncoder().encode(JSON.stringify(publicJwk)));
    await expectRefused(mixed, token, "algorithm_not_allowed", 4001);
  });

  it("refuses a token signed with the wrong secret", async () => {
    const other = await createKeySet({
      secret: "another-secret-that-is-32-bytes-long",
      kid: hs.signingKid,
    });
    const token = await issueToken(other, { ...ROOM, sub: "u" });
    await expectRefused(hs, token, "signature_invalid", 4001);
  });

  it("refuses a token signed by another key pair under a known kid", async () => {
    const other = await createKeySet({ kid: ed.signingKid });
    await expectRefused(
      ed,
      await issueToken(other, { ...ROOM, sub: "u" }),
      "signature_invalid",
      4001,
    );
  });

  it("refuses a truncated token", async () => {
    const token = await issueToken(ed, { ...ROOM, sub: "u" });
    const [header, payload] = token.split(".");
    await expectRefused(ed, `${header}.${payload}`, "token_malformed", 4001);
    await expectRefused(ed, token.slice(0, header!.length + 10), "token_malformed", 4001);
    await expectRefused(ed, token.slice(0, -8), "signature_invalid", 4001);
  });

  it("refuses segments that are not base64url", async () => {
    const token = await issueToken(ed, { ...ROOM, sub: "u" });
    const [header, , signature] = token.split(".");
    await expectRefused(ed, `${header}.eyJ+c3ViIjoi/dSJ9=.${signature}`, "token_malformed", 4001);
    await expectRefused(ed, `%%%.${token.split(".")[1]}.${signature}`, "token_malformed", 4001);
  });

  it("refuses a header that is not JSON", async () => {
    const token = `${b64url("not json")}.${b64url(claims())}.c2ln`;
    await expectRefused(ed, token, "token_malformed", 4001);
  });

  it("refuses a correctly signed payload that is not JSON", async () => {
    await expectRefused(ed, await signRaw(ed, "this is not json"), "token_malformed", 4001);
    await expectRefused(ed, await signRaw(ed, "[1,2,3]"), "token_malformed", 4001);
  });

  it("refuses a token without exp", async () => {
    const error = await expectRefused(
      ed,
      await signRaw(ed, claims({ exp: undefined })),
      "token_malformed",
      4001,
    );
    expect(error.message).toMatch(/expiry/);
  });

  it("refuses a token whose exp is not a number", async () => {
    await expectRefused(ed, await signRaw(ed, claims({ exp: "soon" })), "token_malformed", 4001);
  });

  it("refuses a token without sub", async () => {
    await expectRefused(ed, await signRaw(ed, claims({ sub: undefined })), "token_malformed", 4001);
  });

  it("refuses an expired token, beyond the clock tolerance", async () => {
    const t = now();
    const token = await signRaw(ed, claims({ iat: t - 120, nbf: t - 120, exp: t - 10 }));
    await expectRefused(ed, token, "token_expired", 4001);
    // Within the 5 s tolerance it still verifies.
    const justExpired = await signRaw(ed, claims({ iat: t - 120, nbf: t - 120, exp: t - 2 }));
    await expect(verifyToken(ed, justExpired, ROOM)).resolves.toMatchObject({ sub: "user-1" });
    await expectRefused(ed, justExpired, "token_expired", 4001, { clockTolerance: 0 });
  });

  it("refuses a token whose nbf is in the future", async () => {
    const t = now();
    const token = await signRaw(ed, claims({ nbf: t + 60, iat: t, exp: t + 300 }));
    await expectRefused(ed, token, "token_not_yet_valid", 4001);
  });

  it("refuses a token whose iat is in the future", async () => {
    const t = now();
    const token = await signRaw(ed, claims({ nbf: undefined, iat: t + 60, exp: t + 300 }));
    await expectRefused(ed, token, "token_not_yet_valid", 4001);
  });

  it("refuses a token whose lifetime exceeds the maximum", async () => {
    const long = await issueToken(ed, { ...ROOM, sub: "u", ttl: 7200 });
    await expectRefused(ed, long, "lifetime_too_long", 4001);
    await expect(verifyToken(ed, long, { ...ROOM, maxLifetime: 7200 })).resolves.toBeTruthy();
    const shortMax = await issueToken(ed, { ...ROOM, sub: "u", ttl: 120 });
    await expectRefused(ed, shortMax, "lifetime_too_long", 4001, { maxLifetime: 60 });
  });

  it("measures the lifetime from now when a token has neither nbf nor iat", async () => {
    const t = now();
    const token = await signRaw(ed, claims({ nbf: undefined, iat: undefined, exp: t + 86_400 }));
    await expectRefused(ed, token, "lifetime_too_long", 4001);
  });

  it("refuses a token for another audience or issuer", async () => {
    const aud = await issueToken(ed, { ...ROOM, sub: "u", audience: "billing" });
    await expectRefused(ed, aud, "audience_mismatch", 4001);
    await expect(verifyToken(ed, aud, { ...ROOM, audience: "billing" })).resolves.toBeTruthy();
    const noAud = await signRaw(ed, claims({ aud: undefined }));
    await expectRefused(ed, noAud, "audience_mismatch", 4001);
    const iss = await issueToken(ed, { ...ROOM, sub: "u", issuer: "https://evil.example" });
    await expectRefused(ed, iss, "issuer_mismatch", 4001);
  });

  it("refuses a token for another agent or instance with 4003", async () => {
    const token = await issueToken(ed, { sub: "u", agent: "counter", name: "room-1" });
    await expect(
      verifyToken(ed, token, { agent: "counter", name: "room-1" }),
    ).resolves.toBeTruthy();
    await expectRefused(ed, token, "scope_mismatch", 4003, { agent: "counter", name: "room-2" });
    await expectRefused(ed, token, "scope_mismatch", 4003, { agent: "chat", name: "room-1" });
    await expectRefused(ed, token, "scope_mismatch", 4003, { agent: "counter", name: "ROOM-1" });
  });

  it("refuses a token that carries no agent or name claim unless unscoped tokens are allowed", async () => {
    const token = await signRaw(ed, claims({ agent: undefined, name: undefined }));
    await expectRefused(ed, token, "scope_mismatch", 4003);
    const verified = await verifyToken(ed, token, { ...ROOM, allowUnscoped: true });
    expect(verified).toMatchObject({ agent: "*", name: "*" });
    await expectRefused(ed, await signRaw(ed, claims({ agent: 7 })), "token_malformed", 4001);
  });

  it("applies wildcards only where the token spells them out", async () => {
    const sign = (agent: string, name: string) => issueToken(ed, { sub: "u", agent, name });
    const anyRoom = await sign("chat", "*");
    await expect(verifyToken(ed, anyRoom, { agent: "chat", name: "lobby" })).resolves.toBeTruthy();
    await expectRefused(ed, anyRoom, "scope_mismatch", 4003, { agent: "counter", name: "lobby" });

    const anyAgent = await sign("*", "room-1");
    await expect(
      verifyToken(ed, anyAgent, { agent: "counter", name: "room-1" }),
    ).resolves.toBeTruthy();
    await expectRefused(ed, anyAgent, "scope_mismatch", 4003, { agent: "counter", name: "room-2" });

    const prefix = await sign("chat", "room-*");
    await expect(verifyToken(ed, prefix, { agent: "chat", name: "room-42" })).resolves.toBeTruthy();
    await expectRefused(ed, prefix, "scope_mismatch", 4003, { agent: "chat", name: "lobby" });
    await expectRefused(ed, prefix, "scope_mismatch", 4003, { agent: "chat", name: "room-" });
    await expectRefused(ed, prefix, "scope_mismatch", 4003, { agent: "chat", name: "xroom-1" });

    // A star in the middle is an ordinary character, never a glob.
    const middle = await sign("chat", "room-*-admin");
    await expectRefused(ed, middle, "scope_mismatch", 4003, {
      agent: "chat",
      name: "room-1-admin",
    });
  });

  it("refuses a token whose scope does not include a required one", async () => {
    const token = await issueToken(ed, { ...ROOM, sub: "u", scope: "connect" });
    await expectRefused(ed, token, "scope_mismatch", 4003, { requiredScope: "rpc" });
    await expect(
      verifyToken(ed, token, { ...ROOM, requiredScope: ["connect"] }),
    ).resolves.toBeTruthy();
    await expectRefused(ed, await signRaw(ed, claims({ scope: 42 })), "token_malformed", 4001);
  });

  it("refuses an unknown kid, and a missing kid when several keys could verify", async () => {
    const token = await signRaw(ed, claims(), { kid: "no-such-key" });
    await expectRefused(ed, token, "unknown_key", 4001);
    const two = await createKeySet();
    await two.rotate();
    const noKid = await signRaw(two, claims(), { kid: undefined });
    await expectRefused(two, noKid, "unknown_key", 4001);
    // With a single key, a token without kid (e.g. from a hand-written issuer) still verifies.
    const single = await signRaw(ed, claims(), { kid: undefined });
    await expect(verifyToken(ed, single, ROOM)).resolves.toBeTruthy();
  });

  it("refuses a replayed single-use ticket", async () => {
    const replay = new MemoryReplayStore();
    const token = await issueToken(ed, { ...ROOM, sub: "u", ttl: 30 });
    await expect(verifyToken(ed, token, { ...ROOM, replay })).resolves.toBeTruthy();
    await expectRefused(ed, token, "token_replayed", 4001, { replay });
    const noJti = await signRaw(ed, claims({ jti: undefined }));
    await expectRefused(ed, noJti, "token_malformed", 4001, { replay });
  });

  it("refuses an 8 KiB token before any key lookup or crypto", async () => {
    let lookups = 0;
    const counting: VerificationKeys = {
      algorithms: ed.algorithms,
      resolveKey: (header) => {
        lookups++;
        return ed.resolveKey(header);
      },
    };
    const padded = await issueToken(ed, { ...ROOM, sub: "u", claims: { pad: "x".repeat(8192) } });
    expect(padded.length).toBeGreaterThan(8192);
    const error = await expectRefused(counting, padded, "token_malformed", 4001);
    expect(error.message).toMatch(/too long/);
    expect(lookups).toBe(0);
    // Just under the limit goes through the normal path.
    const normal = await issueToken(ed, { ...ROOM, sub: "u" });
    await verifyToken(counting, normal, ROOM);
    expect(lookups).toBe(1);
  });

  it("every token's key is picked from its own header, whatever a key resolver did to the previous one's", async () => {
    const seen: unknown[] = [];
    const meddling: VerificationKeys = {
      algorithms: ed.algorithms,
      resolveKey: (header) => {
        seen.push({ ...header });
        const resolved = ed.resolveKey(header);
        // A resolver that spoils what it was given must not spoil the next token's header.
        header.alg = "none";
        delete header.kid;
        return resolved;
      },
    };
    const first = await issueToken(ed, { ...ROOM, sub: "u1" });
    const second = await issueToken(ed, { ...ROOM, sub: "u2" });
    expect(first.split(".")[0]).toBe(second.split(".")[0]);
    expect((await verifyToken(meddling, first, ROOM)).sub).toBe("u1");
    expect((await verifyToken(meddling, second, ROOM)).sub).toBe("u2");
    const header = decodeProtectedHeader(first);
    expect(seen).toEqual([header, header]);
    expect(header.kid).toEqual(expect.any(String));
  });

  it("a flood of distinct forged headers is refused like any other and leaves real tokens verifying", async () => {
    const token = await issueToken(ed, { ...ROOM, sub: "u" });
    const [, payload, signature] = token.split(".");
    for (let i = 0; i < 200; i++) {
      const forged = `${b64url({ alg: "EdDSA", kid: `forged-${i}`, typ: "JWT" })}.${payload}.${signature}`;
      await expectRefused(ed, forged, "unknown_key", 4001);
    }
    expect((await verifyToken(ed, token, ROOM)).sub).toBe("u");
  });

  it("refuses an empty token as missing", async () => {
    await expectRefused(ed, "", "token_missing", 4001);
  });
});

describe("refusal details", () => {
  it("carries a fingerprint that never equals or contains the token, and a message without it", async () => {
    const token = await issueToken(ed, { sub: "u", agent: "chat", name: "room-2" });
    const error = await refusal(ed, token);
    expect(error.fingerprint).toMatch(/^[A-Za-z0-9_-]{12}$/);
    expect(error.fingerprint).not.toBe(token);
    expect(token).not.toContain(error.fingerprint);
    expect(error.message).not.toContain(token);
    for (const part of token.split(".")) expect(error.message).not.toContain(part);
    const again = await refusal(ed, token);
    expect(again.fingerprint).toBe(error.fingerprint);
    const other = await refusal(
      ed,
      await issueToken(ed, { sub: "u", agent: "chat", name: "room-2" }),
    );
    expect(other.fingerprint).not.toBe(error.fingerprint);
  });

  it("maps every status to the close code's meaning", async () => {
    expect(new AuthError("token_expired")).toMatchObject({ closeCode: 4001, status: 401 });
    expect(new AuthError("scope_mismatch")).toMatchObject({ closeCode: 4003, status: 403 });
    expect(new AuthError("too_many_attempts")).toMatchObject({ closeCode: 4008, status: 429 });
    expect(new AuthError("token_revoked")).toMatchObject({ closeCode: 4009 });
  });
});

describe("verifyJWT (hand-written shared-secret check)", () => {
  it("returns the payload of a valid HS256 token", async () => {
    const token = await issueToken(hs, { ...ROOM, sub: "user-9" });
    expect(await verifyJWT(token, SECRET)).toMatchObject({ sub: "user-9" });
    expect(await verifyJWT(token, new TextEncoder().encode(SECRET))).toMatchObject({
      sub: "user-9",
    });
  });

  it("accepts a token without kid, as a hand-written issuer makes them", async () => {
    const token = await new SignJWT({ sub: "user-9" })
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime("1m")
      .sign(new TextEncoder().encode(SECRET));
    expect(await verifyJWT(token, SECRET)).toMatchObject({ sub: "user-9" });
  });

  it("throws AuthError for a wrong secret, another algorithm, no exp or an expired token", async () => {
    const codeOf = (p: Promise<unknown>) =>
      p.then(
        () => "accepted",
        (e: AuthError) => e.code,
      );
    const token = await issueToken(hs, { ...ROOM, sub: "u" });
    expect(await codeOf(verifyJWT(token, "a-different-secret-of-32-bytes-or-more"))).toBe(
      "signature_invalid",
    );
    expect(await codeOf(verifyJWT(await issueToken(ed, { ...ROOM, sub: "u" }), SECRET))).toBe(
      "algorithm_not_allowed",
    );
    expect(await codeOf(verifyJWT(assemble({ alg: "none" }, { sub: "u" }), SECRET))).toBe(
      "algorithm_not_allowed",
    );
    expect(await codeOf(verifyJWT(await signRaw(hs, claims({ exp: undefined })), SECRET))).toBe(
      "token_malformed",
    );
    const t = now();
    expect(
      await codeOf(
        verifyJWT(await signRaw(hs, claims({ iat: t - 99, nbf: t - 99, exp: t - 60 })), SECRET),
      ),
    ).toBe("token_expired");
    expect(await codeOf(verifyJWT("x".repeat(9000), SECRET))).toBe("token_malformed");
  });

  it("refuses a secret shorter than 32 bytes as a configuration error", async () => {
    await expect(verifyJWT("a.b.c", "short")).rejects.toThrow(TypeError);
  });
});

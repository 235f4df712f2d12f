import { decodeJwt } from "jose";
import { describe, expect, it } from "vitest";
import { AuthError, createKeySet, sessionCookie } from "../../src/auth/index.js";

const SECRET = "a-cookie-secret-of-at-least-32-bytes";
const cookieValue = (setCookie: string) => setCookie.split(";")[0]!.split("=").slice(1).join("=");

describe("sessionCookie", () => {
  it("issues an HttpOnly, SameSite=Strict, Secure cookie holding a token for any agent", async () => {
    const cookie = sessionCookie({ secret: SECRET });
    const header = await cookie.issue({ sub: "user-1" });
    expect(header).toMatch(/^outpost_session=[\w-]+\.[\w-]+\.[\w-]+; /);
    const attributes = header.split("; ").slice(1);
    expect(attributes).toEqual(
      expect.arrayContaining(["Max-Age=3600", "Path=/", "HttpOnly", "SameSite=Strict", "Secure"]),
    );
    const payload = decodeJwt(cookieValue(header));
    expect(payload).toMatchObject({ sub: "user-1", agent: "*", name: "*", aud: "outpost:session" });
    expect(payload.exp! - payload.iat!).toBe(3600);
  });

  it("follows the configured name, lifetime, SameSite, Secure and path", async () => {
    const cookie = sessionCookie({
      secret: SECRET,
      name: "sid",
      ttl: 600,
      sameSite: "Lax",
      secure: false,
      path: "/app",
    });
    const header = await cookie.issue({
      sub: "u",
      agent: "chat",
      name: "room-1",
      scope: ["connect"],
    });
    expect(header.startsWith("sid=")).toBe(true);
    expect(header).toContain("Max-Age=600");
    expect(header).toContain("SameSite=Lax");
    expect(header).toContain("Path=/app");
    expect(header).not.toContain("Secure");
    expect(decodeJwt(cookieValue(header))).toMatchObject({
      agent: "chat",
      name: "room-1",
      scope: "connect",
    });
  });

  it("clears the cookie with the same attributes", () => {
    const cleared = sessionCookie({ secret: SECRET }).clear();
    expect(cleared).toMatch(/^outpost_session=; /);
    expect(cleared).toContain("Max-Age=0");
    expect(cleared).toContain("HttpOnly");
    expect(cleared).toContain("Secure");
  });

  it("reads and verifies its own cookie and refuses it sent twice", async () => {
    const cookie = sessionCookie({ keys: await createKeySet() });
    const value = cookieValue(await cookie.issue({ sub: "u" }));
    expect(cookie.read(new Headers({ cookie: `x=1; outpost_session=${value}; y=2` }))).toBe(value);
    expect(cookie.read(new Headers({ cookie: "x=1" }))).toBeUndefined();
    expect(cookie.read(new Headers())).toBeUndefined();
    expect(() =>
      cookie.read(new Headers({ cookie: `outpost_session=${value}; outpost_session=x` })),
    ).toThrow(AuthError);
    expect((await cookie.verify(value, { agent: "chat", name: "room-1" })).sub).toBe("u");
  });

  it("refuses unsafe or inconsistent configuration", () => {
    expect(() => sessionCookie({})).toThrow(/keys.*secret/);
    expect(() => sessionCookie({ secret: SECRET, sameSite: "None", secure: false })).toThrow(
      TypeError,
    );
    expect(() => sessionCookie({ secret: SECRET, name: "__Host-s", path: "/app" })).toThrow(
      TypeError,
    );
    expect(() => sessionCookie({ secret: SECRET, name: "bad name" })).toThrow(TypeError);
    expect(() => sessionCookie({ secret: SECRET, ttl: 0 })).toThrow(TypeError);
    expect(() => sessionCookie({ secret: SECRET, path: "/a; Domain=evil" })).toThrow(TypeError);
  });

  it("reports a too-short secret when issuing", async () => {
    await expect(sessionCookie({ secret: "short" }).issue({ sub: "u" })).rejects.toThrow(
      /32 bytes/,
    );
  });
});

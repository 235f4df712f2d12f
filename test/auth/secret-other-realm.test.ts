// @vitest-environment jsdom
import { describe, expect, it } from "vitest";
import { createKeySet, issueToken, verifyToken } from "../../src/auth/index.js";

// Under jsdom, TextEncoder and Uint8Array come from another realm than Node's; code that
// checks `instanceof Uint8Array` refuses them. Users test their apps this way.
describe("shared secrets from another realm", () => {
  it("imports a string secret and signs and verifies under jsdom", async () => {
    const keys = await createKeySet({ secret: "a-secret-of-at-least-32-bytes-long!!" });
    const token = await issueToken(keys, { sub: "u", agent: "chat", name: "room" });
    await expect(verifyToken(keys, token, { agent: "chat", name: "room" })).resolves.toMatchObject({
      sub: "u",
    });
  });

  it("imports a secret given as bytes made by this realm's TextEncoder", async () => {
    const bytes = new TextEncoder().encode("bytes-secret-of-at-least-32-bytes-long");
    const keys = await createKeySet({ secret: bytes });
    expect(keys.algorithms).toEqual(["HS256"]);
  });
});

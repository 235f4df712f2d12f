import { CompactSign } from "jose";
import type { KeySet } from "../../src/auth/index.js";

/** Base64url of a string or of JSON. */
export function b64url(value: unknown): string {
  return Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString(
    "base64url",
  );
}

export const now = (): number => Math.floor(Date.now() / 1000);

/** Claims a valid token for chat/room-1 would carry, overridable. */
export function claims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const t = now();
  const base: Record<string, unknown> = {
    sub: "user-1",
    agent: "chat",
    name: "room-1",
    aud: "outpost",
    iss: "outpost",
    jti: `jti-${Math.random().toString(36).slice(2)}`,
    iat: t,
    nbf: t,
    exp: t + 300,
    ...overrides,
  };
  for (const [key, value] of Object.entries(base)) if (value === undefined) delete base[key];
  return base;
}

/**
 * Sign any payload bytes with the key set's real signing key, under any header: the
 * signature is valid, so only the check under test can refuse it.
 */
export async function signRaw(
  keys: KeySet,
  payload: Record<string, unknown> | string,
  header: Record<string, unknown> = {},
): Promise<string> {
  const signer = keys.signingKey();
  const bytes = new TextEncoder().encode(
    typeof payload === "string" ? payload : JSON.stringify(payload),
  );
  return new CompactSign(bytes)
    .setProtectedHeader({ alg: signer.algorithm, kid: signer.kid, ...header })
    .sign(signer.key);
}

/** A token assembled by hand from a header, payload and signature segment. */
export function assemble(header: unknown, payload: unknown, signature = ""): string {
  return `${b64url(header)}.${b64url(payload)}.${signature}`;
}

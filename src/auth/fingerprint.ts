import * as crypto from "node:crypto";

/** One-shot `crypto.hash` (Node ≥ 20.12) skips the Hash object; older Nodes use `createHash`. */
const sha256: (text: string) => string =
  typeof (crypto as { hash?: unknown }).hash === "function"
    ? (text) => crypto.hash("sha256", text, "base64url")
    : (text) => crypto.createHash("sha256").update(text).digest("base64url");

/**
 * A short, non-reversible name for a credential, safe to log: the first 12 base64url
 * characters (72 bits) of its SHA-256. Enough to tell tokens apart in an audit trail,
 * useless for rebuilding or replaying one.
 *
 * @example
 * logger.warn({ fingerprint: fingerprint(token) }, "token refused");
 */
export function fingerprint(token: string): string {
  return sha256(token).slice(0, 12);
}

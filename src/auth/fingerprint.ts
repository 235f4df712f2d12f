import { createHash } from "node:crypto";

/**
 * A short, non-reversible name for a credential, safe to log: the first 12 base64url
 * characters (72 bits) of its SHA-256. Enough to tell tokens apart in an audit trail,
 * useless for rebuilding or replaying one.
 *
 * @example
 * logger.warn({ fingerprint: fingerprint(token) }, "token refused");
 */
export function fingerprint(token: string): string {
  return createHash("sha256").update(token).digest("base64url").slice(0, 12);
}

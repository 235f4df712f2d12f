import type { AuthClaims } from "./policy.js";

/**
 * Revoked subjects and token ids. A subject's revocation refuses every token issued at or
 * before it; a token id's refuses that token. Entries are kept only as long as a token they
 * could refuse can live (the longest accepted lifetime plus clock tolerance), so memory
 * follows the revocation rate, not the uptime.
 */
export class Revocations {
  /** sub → revocation time (seconds since the epoch). */
  readonly #subjects = new Map<string, number>();
  /** jti → revocation time (seconds since the epoch). */
  readonly #tokens = new Map<string, number>();
  readonly #keepSeconds: number;

  /** @param keepSeconds how long an entry can still matter: max lifetime + clock tolerance. */
  constructor(keepSeconds: number) {
    this.#keepSeconds = keepSeconds;
  }

  revoke(target: { sub?: string; jti?: string }, now = Date.now()): void {
    const at = Math.floor(now / 1000);
    this.#prune(at);
    // Delete first so Map order stays oldest-first for pruning.
    if (target.sub !== undefined) {
      this.#subjects.delete(target.sub);
      this.#subjects.set(target.sub, at);
    }
    if (target.jti !== undefined) {
      this.#tokens.delete(target.jti);
      this.#tokens.set(target.jti, at);
    }
  }

  isRevoked(claims: AuthClaims): boolean {
    if (typeof claims.jti === "string" && this.#tokens.has(claims.jti)) return true;
    const revokedAt = this.#subjects.get(claims.sub);
    if (revokedAt === undefined) return false;
    const issuedAt = claims.iat ?? claims.nbf;
    // A token that does not say when it was issued might predate the revocation.
    return typeof issuedAt !== "number" || issuedAt <= revokedAt;
  }

  /** Entries currently kept. */
  get size(): number {
    return this.#subjects.size + this.#tokens.size;
  }

  #prune(now: number): void {
    for (const map of [this.#subjects, this.#tokens]) {
      for (const [key, at] of map) {
        if (at + this.#keepSeconds >= now) break;
        map.delete(key);
      }
    }
  }
}

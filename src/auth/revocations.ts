import type { AuthClaims } from "./policy.js";
import type { RevocationEntry } from "./state-store.js";

/**
 * Revoked subjects and token ids, in memory, checked synchronously on every frame. A
 * subject's revocation refuses every token issued up to `clockTolerance` after it (the
 * issuer's clock may run behind ours by that much, so a token stamped "just after" may
 * really predate the revocation); a token id's refuses that token. Entries are kept only as
 * long as a token they could refuse can live (the longest accepted lifetime plus twice the clock
 * tolerance), so memory follows the revocation rate, not the uptime.
 */
export class Revocations {
  /** sub → entry. Map order is insertion order, oldest first, for pruning. */
  readonly #subjects = new Map<string, RevocationEntry>();
  /** jti → entry. */
  readonly #tokens = new Map<string, RevocationEntry>();
  readonly #keepMs: number;
  readonly #toleranceMs: number;

  /**
   * @param keepSeconds how long an entry can still matter: max lifetime + twice the clock tolerance.
   * @param toleranceSeconds the verifier's clock tolerance.
   */
  constructor(keepSeconds: number, toleranceSeconds = 0) {
    this.#keepMs = keepSeconds * 1000;
    this.#toleranceMs = toleranceSeconds * 1000;
  }

  /** Revoke now; returns the entries made, for a durable store to keep. */
  revoke(target: { sub?: string; jti?: string }, now = Date.now()): RevocationEntry[] {
    this.#prune(now);
    const made: RevocationEntry[] = [];
    const expiresAt = now + this.#keepMs;
    if (target.sub !== undefined)
      made.push({ kind: "sub", value: target.sub, revokedAt: now, expiresAt });
    if (target.jti !== undefined)
      made.push({ kind: "jti", value: target.jti, revokedAt: now, expiresAt });
    for (const entry of made) this.add(entry);
    return made;
  }

  /**
   * Take in an entry made elsewhere (loaded at startup, or pushed by another node). False
   * when it changes nothing (already known, or older than the one kept).
   */
  add(entry: RevocationEntry): boolean {
    const map = entry.kind === "sub" ? this.#subjects : this.#tokens;
    const current = map.get(entry.value);
    // The latest revocation of a subject refuses the most tokens.
    if (current !== undefined && current.revokedAt >= entry.revokedAt) return false;
    // Delete first so Map order stays oldest-first for pruning.
    map.delete(entry.value);
    map.set(entry.value, entry);
    return true;
  }

  isRevoked(claims: AuthClaims): boolean {
    if (typeof claims.jti === "string" && this.#tokens.has(claims.jti)) return true;
    const entry = this.#subjects.get(claims.sub);
    if (entry === undefined) return false;
    const issuedAt = claims.iat ?? claims.nbf;
    // A token that does not say when it was issued might predate the revocation.
    return typeof issuedAt !== "number" || issuedAt * 1000 <= entry.revokedAt + this.#toleranceMs;
  }

  /** Entries currently kept. */
  get size(): number {
    return this.#subjects.size + this.#tokens.size;
  }

  #prune(now: number): void {
    for (const map of [this.#subjects, this.#tokens]) {
      for (const [key, entry] of map) {
        if (entry.revokedAt + this.#keepMs >= now) break;
        map.delete(key);
      }
    }
  }
}

/** The timing claims of a JWT, read without verifying it (the server does that). */
export interface TokenTimes {
  /** Expiry, milliseconds since the epoch. */
  expiresAt: number;
  /** Issue time, milliseconds since the epoch, when the token says. */
  issuedAt?: number;
}

/**
 * `exp` and `iat` of a compact JWT, or `undefined` when `token` is not one or has no `exp`.
 * Only used to decide when to fetch a fresh token; nothing is trusted from it.
 */
export function readTokenTimes(token: string): TokenTimes | undefined {
  const parts = token.split(".");
  if (parts.length !== 3 || parts[1] === undefined || parts[1].length > 8192) return undefined;
  let claims: unknown;
  try {
    const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(base64.padEnd(base64.length + ((4 - (base64.length % 4)) % 4), "="));
    claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))));
  } catch {
    return undefined;
  }
  if (claims === null || typeof claims !== "object") return undefined;
  const { exp, iat } = claims as { exp?: unknown; iat?: unknown };
  if (typeof exp !== "number" || !Number.isFinite(exp)) return undefined;
  const times: TokenTimes = { expiresAt: exp * 1000 };
  if (typeof iat === "number" && Number.isFinite(iat) && iat < exp) times.issuedAt = iat * 1000;
  return times;
}

/**
 * When to fetch a replacement for a token received at `receivedAt`: at `fraction` of its
 * life. Two estimates, the earlier wins: one counts from when this client got the token,
 * so a skewed local clock does not matter for fresh tokens; the other counts back from
 * `exp`, so a token that sat in a cache for a while is still replaced in time.
 */
export function refreshTime(times: TokenTimes, receivedAt: number, fraction: number): number {
  const life = times.expiresAt - (times.issuedAt ?? receivedAt);
  if (life <= 0) return receivedAt;
  return Math.min(receivedAt + life * fraction, times.expiresAt - life * (1 - fraction));
}

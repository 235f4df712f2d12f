/**
 * Normalise an origin allowlist once, at configuration time: `https://App.example.com:443/`
 * becomes `https://app.example.com`. Entries must be full origins; wildcards are not accepted
 * because a too-broad pattern is the usual way an allowlist fails.
 *
 * @example
 * normalizeOrigins(["https://app.example.com", "http://localhost:5173"]);
 */
export function normalizeOrigins(origins: readonly string[]): Set<string> {
  const set = new Set<string>();
  for (const origin of origins) {
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      throw new TypeError(
        `allowedOrigins: "${origin}" is not an origin like https://app.example.com`,
      );
    }
    if (url.origin === "null" || (url.pathname !== "/" && url.pathname !== "") || url.search) {
      throw new TypeError(
        `allowedOrigins: "${origin}" is not an origin like https://app.example.com`,
      );
    }
    set.add(url.origin);
  }
  return set;
}

/** Is the request's `Origin` header value on the (normalised) allowlist? */
export function isOriginAllowed(allowed: ReadonlySet<string>, origin: string | null): boolean {
  if (origin === null || origin === "null") return false;
  if (allowed.has(origin)) return true;
  try {
    return allowed.has(new URL(origin).origin);
  } catch {
    return false;
  }
}

import type { AuthAction } from "./policy.js";

/** Scopes a token without a `scope` claim grants: every action (see `AuthAction`). */
export const FULL_SCOPE: readonly AuthAction[] = [
  "connect",
  "rpc",
  "state:write",
  "message",
  "http",
];

/**
 * Does a token's `agent` or `name` claim cover `value`? Exact, `*` for any, or an explicit
 * prefix wildcard such as `room-*` (which covers `room-1` but not `room-` itself). Any other
 * `*` is an ordinary character: wildcards are never implied.
 *
 * @example
 * matchesTarget("room-*", "room-42"); // true
 * matchesTarget("room-1", "room-2");  // false
 */
export function matchesTarget(pattern: string, value: string): boolean {
  if (pattern === "*" || pattern === value) return true;
  if (pattern.length > 1 && pattern.endsWith("*")) {
    const prefix = pattern.slice(0, -1);
    return value.length > prefix.length && value.startsWith(prefix);
  }
  return false;
}

/**
 * The scopes a `scope` claim grants: a space-separated string (RFC 8693) or an array of
 * strings; absent means `FULL_SCOPE`. Anything else is `undefined` (a malformed token).
 */
export function parseScope(claim: unknown): string[] | undefined {
  if (claim === undefined) return [...FULL_SCOPE];
  if (typeof claim === "string") return claim.split(" ").filter((s) => s !== "");
  if (Array.isArray(claim) && claim.every((s) => typeof s === "string")) return [...claim];
  return undefined;
}

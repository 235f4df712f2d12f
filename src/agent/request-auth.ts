import type { AuthClaims } from "../auth/policy.js";
import { processWide } from "./shared.js";

const claimsOf = processWide("requestAuth", () => new WeakMap<Request, AuthClaims>());

/** @internal The server records who sent an admitted request before `onRequest` sees it. */
export function setRequestAuth(request: Request, claims: AuthClaims): void {
  claimsOf.set(request, claims);
}

/**
 * The verified claims of the caller of an HTTP request to an agent, inside `onRequest`
 * (`undefined` when the server has no `auth`).
 *
 * @example
 * onRequest(request: Request) {
 *   const caller = requestAuth(request);
 *   return Response.json({ you: caller?.sub });
 * }
 */
export function requestAuth(request: Request): AuthClaims | undefined {
  return claimsOf.get(request);
}

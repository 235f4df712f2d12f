/**
 * Token auth for the soak and child-process servers: both processes build the same HS256
 * key set from OUTPOST_SOAK_SECRET (set once by the parent, inherited by the child).
 */
import { randomBytes } from "node:crypto";
import { createKeySet, issueToken, tokenAuth } from "../../src/auth/index.js";
import type { AuthPolicy } from "../../src/index.js";

process.env.OUTPOST_SOAK_SECRET ??= randomBytes(32).toString("base64url");
const keys = createKeySet({ secret: process.env.OUTPOST_SOAK_SECRET });

/** The server side: every connection needs a token for its own instance. */
export async function createAuth(): Promise<AuthPolicy> {
  return tokenAuth({ keys: await keys });
}

/** The client side: a token for `agent/name`, valid for `ttlSeconds`. */
export async function tokenFor(
  sub: string,
  agent: string,
  name: string,
  ttlSeconds: number,
): Promise<string> {
  return issueToken(await keys, {
    sub,
    agent,
    name,
    scope: ["connect", "rpc", "state:write"],
    ttl: ttlSeconds,
  });
}

/**
 * A Counter server with token auth and single-use tickets in a process of its own, for
 * tests that kill it. Usage: `node --import tsx auth-server.ts <dataDir>` with the HS256
 * secret in OUTPOST_TEST_SECRET; prints `{"port":N}` once listening. Each line on stdin
 * `{"revoke":{"sub"?:…,"jti"?:…}}` revokes and answers `{"revoked":N}` on stdout.
 */
import { createInterface } from "node:readline";
import { createKeySet, tokenAuth } from "../../src/auth/index.js";
import { serve } from "../../src/index.js";
import { Counter } from "../fixtures/agents.js";

const dataDir = process.argv[2];
const secret = process.env.OUTPOST_TEST_SECRET;
if (dataDir === undefined || secret === undefined) {
  throw new Error("usage: OUTPOST_TEST_SECRET=… auth-server.ts <dataDir>");
}
const keys = await createKeySet({ secret });
const server = await serve({
  agents: { Counter },
  port: 0,
  hostname: "127.0.0.1",
  dataDir,
  logger: false,
  auth: tokenAuth({ keys, singleUse: true, rateLimit: false }),
});
process.stdout.write(`${JSON.stringify({ port: server.port })}\n`);
for await (const line of createInterface({ input: process.stdin })) {
  const { revoke } = JSON.parse(line) as { revoke: { sub?: string; jti?: string } };
  const revoked = await server.revoke(revoke);
  process.stdout.write(`${JSON.stringify({ revoked })}\n`);
}

/**
 * The test chat agent's server in its own process, for the test that kills it mid-answer.
 * `node --import tsx chat-server-child.ts <dataDir>`; prints `{"port": n}` once listening.
 */
import { serve } from "../../src/index.js";
import { TestChat } from "./fixtures.js";

const server = await serve({
  agents: { TestChat },
  port: 0,
  hostname: "127.0.0.1",
  dataDir: process.argv[2]!,
  logger: false,
  handleSignals: false,
});
process.stdout.write(`${JSON.stringify({ port: server.port })}\n`);

/**
 * Outpost as a user would run it: `serve()` with `tokenAuth` over the run's key, one agent
 * class whose callables answer the same JSON as the other contenders. Logging is off for
 * every contender (none of them logs), the per-instance connection cap is raised for the
 * 10,000-connection memory run, and the per-address failure limit is off because every
 * client comes from 127.0.0.1 and the refused workload measures the signature check itself
 * (the other contenders have no such limit). One extra run keeps the limit on, to show
 * what a flood of bad tokens from one address costs with Outpost's defaults.
 */
import { tokenAuth } from "../../src/auth/index.js";
import { Agent, callable, serve } from "../../src/index.js";
import { benchKeySet } from "../tokens.js";
import { attach, readConfig } from "./ipc.js";

/** The agent every client talks to: echo for round trips, bump for a broadcast. */
export class Bench extends Agent<unknown, { n: number }> {
  override initialState = { n: 0 };

  @callable()
  echo(value: unknown) {
    return value;
  }

  @callable()
  bump() {
    this.setState({ n: this.state.n + 1 });
    return this.state.n;
  }
}

const config = readConfig();
const keys = await benchKeySet(config.keys, config.algorithm);
const server = await serve({
  agents: { Bench },
  port: config.port ?? 0,
  hostname: "127.0.0.1",
  dataDir: config.dataDir,
  logger: false,
  handleSignals: false,
  auth: tokenAuth({ keys, ...(config.failureLimit !== true && { rateLimit: false }) }),
  maxConnectionsPerInstance: 20_000,
  ...(config.cluster !== undefined && { cluster: config.cluster }),
});
attach(
  server.port,
  () => server.stats().connections,
  () => server.close(),
);

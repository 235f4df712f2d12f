/**
 * Outpost as a user would run it: `serve()` with `tokenAuth` over the run's key, one agent
 * class whose callables answer the same JSON as the other contenders. Logging is off for
 * every contender (none of them logs), the per-instance connection cap is raised for the
 * 10,000-connection memory run, and the per-address failure limit is off because every
 * client comes from 127.0.0.1 and the refused workload measures the signature check itself
 * (the other contenders have no such limit). One extra run keeps the limit on, to show
 * what a flood of bad tokens from one address costs with Outpost's defaults.
 */
import { BUILT_ENV } from "../config.js";
import { benchKeySet } from "../tokens.js";
import { attach, readConfig } from "./ipc.js";

// `npm run bench` builds the package and runs its dist/, as an app does (`BUILT_ENV`); the
// tests that start this server run the sources. Under tsx, every function the sources
// define is named again at run time, work that no user's server does.
const built = process.env[BUILT_ENV] === "1";
const { Agent, callable, serve }: typeof import("../../src/index.js") = await import(
  built ? "outpost" : "../../src/index.js"
);
const { createKeySet, tokenAuth }: typeof import("../../src/auth/index.js") = await import(
  built ? "outpost/auth" : "../../src/auth/index.js"
);

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
// The key set from the same package as the server: its key lookup runs on every connect.
const keys = await benchKeySet(config.keys, config.algorithm, createKeySet);
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

/**
 * Outpost as a user would run it: `serve()` with `tokenAuth`, one agent class whose
 * callables answer the same JSON as the other contenders. Logging is off for every
 * contender (none of them logs), and the per-instance connection cap is raised for the
 * 10,000-connection memory run.
 */
import { Agent, type AuthPolicy, callable, serve } from "../../src/index.js";
import type { ServerConfig } from "../config.js";
import { attach, readConfig } from "./ipc.js";
import { createVerifier } from "./verify.js";

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

async function createAuth(config: ServerConfig): Promise<AuthPolicy> {
  const verifier = await createVerifier(config);
  return {
    rejectWithHttp: false,
    async authenticate(request) {
      try {
        const exp = await verifier.verify(
          request.url.searchParams.get("token"),
          request.agent,
          request.name,
        );
        return {
          claims: { sub: "x", agent: request.agent, name: request.name, scope: ["connect", "rpc"] },
          expiresAt: exp * 1000,
          fingerprint: "x",
        };
      } catch {
        throw Object.assign(new Error("Unauthorized"), {
          code: "signature_invalid",
          closeCode: 4001,
        });
      }
    },
    async refresh(current) {
      return current;
    },
    authorize(session) {
      if (session.expiresAt !== undefined && Date.now() >= session.expiresAt)
        throw Object.assign(new Error("expired"), { code: "token_expired", closeCode: 4001 });
    },
    isRevoked: () => false,
    revoke() {},
  };
}

const config = readConfig();
const server = await serve({
  agents: { Bench },
  port: 0,
  hostname: "127.0.0.1",
  dataDir: config.dataDir,
  logger: false,
  handleSignals: false,
  auth: await createAuth(config),
  maxConnectionsPerInstance: 20_000,
});
attach(
  server.port,
  () => server.stats().connections,
  () => server.close(),
);

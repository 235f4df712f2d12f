/**
 * One server of `npm run bench -- --cluster`, in its own process: a node of the cluster
 * (with `postgres` and `schema`) or, without them, a single-node server to compare with.
 * Configured by the JSON in CLUSTER_BENCH; prints `{"port":N}` once it listens.
 */
import { randomBytes } from "node:crypto";
import { createKeySet, tokenAuth } from "../src/auth/index.js";
import { Agent, callable, serve } from "../src/index.js";

interface Setup {
  id: string;
  dataDir: string;
  secret: string;
  postgres?: string;
  schema?: string;
}

const setup = JSON.parse(process.env.CLUSTER_BENCH ?? "{}") as Setup;

/** The benchmark's agent: a read-only call, a write turn, and a way to grow its database. */
export class Room extends Agent<unknown, { posts: number }> {
  override initialState = { posts: 0 };

  override onStart() {
    this.sql`CREATE TABLE IF NOT EXISTS posts (id INTEGER PRIMARY KEY, body BLOB NOT NULL)`;
  }

  @callable()
  ping(value: number) {
    return value;
  }

  /** One write turn: a row and a state change, both durable before the answer leaves. */
  @callable()
  post(text: string) {
    this.sql`INSERT INTO posts (body) VALUES (${text})`;
    this.setState({ posts: this.state.posts + 1 });
    return this.state.posts;
  }

  /** Add `kib` KiB of incompressible rows in one turn. */
  @callable()
  fill(kib: number) {
    for (let i = 0; i < kib / 16; i++) {
      this.sql`INSERT INTO posts (body) VALUES (${randomBytes(16 * 1024)})`;
    }
    return kib;
  }

  @callable()
  where() {
    return setup.id;
  }
}

const keys = await createKeySet({ secret: setup.secret });
const server = await serve({
  agents: { Room },
  port: 0,
  hostname: "127.0.0.1",
  dataDir: setup.dataDir,
  logger: false,
  handleSignals: true,
  auth: tokenAuth({ keys, rateLimit: false }),
  ...(setup.postgres !== undefined && {
    cluster: {
      postgres: setup.postgres,
      schema: setup.schema ?? "outpost_bench",
      nodeId: setup.id,
      // Short leases, as a deployment that wants fast failover would set them.
      leaseMs: 3_000,
      heartbeatMs: 500,
      fenceMarginMs: 1_000,
    },
  }),
});
process.stdout.write(`${JSON.stringify({ port: server.port })}\n`);

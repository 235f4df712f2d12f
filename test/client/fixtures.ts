/**
 * A real Outpost server for the client and hook tests: one `Lab` agent, token auth with an
 * HS256 key set, on 127.0.0.1 and port 0, with its own data directory.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { createKeySet, issueToken, type KeySet, tokenAuth } from "../../src/auth/index.js";
import type { AgentClientOptions } from "../../src/client/index.js";
import { AgentClient } from "../../src/client/index.js";
import {
  Agent,
  type Connection,
  callable,
  getCurrentAgent,
  type ServeHandle,
  type StreamingResponse,
  serve,
} from "../../src/index.js";

export interface LabState {
  count: number;
  note?: string;
}

/** The agent the client tests talk to. */
export class Lab extends Agent<unknown, LabState> {
  override initialState: LabState = { count: 0 };

  override validateStateChange(next: LabState) {
    if (typeof next?.count !== "number") throw new Error("count must be a number");
  }

  override onMessage(connection: Connection, message: string | Buffer) {
    connection.send(`echo:${String(message)}`);
  }

  @callable()
  increment(by = 1) {
    this.setState({ ...this.state, count: this.state.count + by });
    return this.state.count;
  }

  @callable()
  async slow(value: unknown, ms: number) {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return value;
  }

  @callable()
  fail(message: string) {
    throw new Error(message);
  }

  @callable({ streaming: true })
  async countdown(stream: StreamingResponse, from: number) {
    for (let i = from; i > 0; i--) {
      stream.send(i);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    stream.end("liftoff");
  }

  /** Close the caller's connection with `code` right after answering. */
  @callable()
  kick(code: number, reason: string) {
    const { connection } = getCurrentAgent();
    setTimeout(() => connection?.close(code, reason), 20);
    return "bye";
  }

  /** The subject of the caller's credentials. */
  @callable()
  whoami() {
    return getCurrentAgent().connection?.auth?.sub ?? null;
  }

  /** HTTP to the instance: where it arrived. */
  override onRequest(request: Request) {
    return Response.json({ pathname: new URL(request.url).pathname });
  }

  /** Where the caller's socket arrived: its upgrade URL's path. */
  @callable()
  where() {
    return new URL(getCurrentAgent().connection?.uri ?? "http://x/").pathname;
  }

  /** The `exp` the server holds for the caller's credentials. */
  @callable()
  expiry() {
    return getCurrentAgent().connection?.auth?.exp ?? null;
  }
}

/** A running server plus what a test needs to reach it. */
export interface Outpost {
  server: ServeHandle;
  keys: KeySet;
  dataDir: string;
  /** A token for `lab/<name>`, valid `ttl` seconds. */
  token(name: string, ttl?: number, sub?: string): Promise<string>;
  /** Stop the server (keeps the data directory, for restarts). */
  stop(): Promise<void>;
  /** Start it again on the same port and data directory. */
  restart(): Promise<void>;
  /** Stop and remove the data directory. */
  dispose(): Promise<void>;
}

/** Start a Lab server with token auth (or none with `auth: false`). */
export async function startOutpost(
  options: { auth?: boolean; clockTolerance?: number } = {},
): Promise<Outpost> {
  // Ed25519, the default: generated per server, nothing to share.
  const keys = await createKeySet();
  const dataDir = mkdtempSync(join(tmpdir(), "outpost-client-"));
  const start = (port: number) =>
    serve({
      agents: { Lab },
      port,
      hostname: "127.0.0.1",
      dataDir,
      logger: false,
      handleSignals: false,
      ...(options.auth !== false && {
        auth: tokenAuth({ keys, clockTolerance: options.clockTolerance ?? 0, rateLimit: false }),
      }),
    });
  let server = await start(0);
  let stopped = false;
  const outpost: Outpost = {
    get server() {
      return server;
    },
    keys,
    dataDir,
    token: (name, ttl = 60, sub = "ada") => issueToken(keys, { sub, agent: "lab", name, ttl }),
    async stop() {
      if (stopped) return;
      stopped = true;
      await server.close();
    },
    async restart() {
      server = await start(server.port);
      stopped = false;
    },
    async dispose() {
      await outpost.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return outpost;
}

/** Every client a test made, closed after it. */
// (Hook tests make their own through `useAgent`.)
const clients = new Set<AgentClient<LabState>>();

/** A client of `lab/<name>` on `outpost`, with quick retries so tests run fast. */
export function labClient(
  outpost: Outpost,
  options: Partial<AgentClientOptions<LabState>> & { name: string },
): AgentClient<LabState> {
  const client = new AgentClient<LabState>({
    agent: "Lab",
    host: outpost.server.url,
    WebSocket,
    reconnect: { minDelay: 20, maxDelay: 200 },
    ...options,
  });
  clients.add(client);
  return client;
}

/** Close every client made with `labClient`. */
export function closeClients(): void {
  for (const client of clients) client.close();
  clients.clear();
}

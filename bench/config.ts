/**
 * What the orchestrator, the three servers and the load generator agree on. Every contender
 * gets the same agent/instance names, the same keys, the same claims checks and the same
 * JSON frames, so the comparison is of servers and nothing else.
 */
import type { JWK } from "jose";

/** The three servers compared, in table order. */
export const CONTENDERS = ["outpost", "bare", "socketio"] as const;

/** Set to "1" for the server processes when Outpost's servers are to run the built dist/. */
export const BUILT_ENV = "OUTPOST_BENCH_BUILT";
export type Contender = (typeof CONTENDERS)[number];

/** Human names for tables and the chart. */
export const CONTENDER_LABELS: Record<Contender, string> = {
  outpost: "Outpost",
  bare: "bare ws+jose",
  socketio: "Socket.IO",
};

export type Algorithm = "EdDSA" | "HS256";

/** Agent (kebab class name) and instance every client connects to. */
export const AGENT = "bench";
export const INSTANCE = "room";
/** Claims the tokens carry and every server checks (Outpost's defaults). */
export const AUDIENCE = "outpost";
export const ISSUER = "outpost";
/** Longest token lifetime accepted, in seconds (Outpost's default). */
export const MAX_LIFETIME = 3600;

/** Key material shared by every process: one Ed25519 pair and one HS256 secret. */
export interface BenchKeys {
  ed25519: { kid: string; privateJwk: JWK; publicJwk: JWK };
  hs256: { kid: string; secret: string /* base64url */ };
}

/** Given to a server process as JSON in the BENCH_SERVER environment variable. */
export interface ServerConfig {
  contender: Contender;
  /** Which key verifies tokens (the server accepts only that algorithm). */
  algorithm: Algorithm;
  keys: BenchKeys;
  /** Outpost only: where the instance's SQLite database lives. */
  dataDir: string;
  /** Outpost only: keep `tokenAuth`'s per-address failure limit on (its default). */
  failureLimit?: boolean;
  /** Port to listen on; 0 (any free port) unless a restarted server must keep its port. */
  port?: number;
  /** Outpost only: run as one node of a cluster on this PostgreSQL database and schema. */
  cluster?: { postgres: string; schema: string };
}

/** Server → orchestrator over IPC. */
export type ServerMessage =
  | { type: "listening"; port: number }
  | ({ type: "stats" } & ServerStats)
  | { type: "snapshot"; path: string };

/** Orchestrator → server over IPC. */
export type ServerCommand =
  | { type: "stats"; gc: boolean }
  | { type: "snapshot"; path: string }
  | { type: "close" };

/** A server's own view of itself, taken inside its process. */
export interface ServerStats {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  /** Process CPU time (user + system) since start, in microseconds. */
  cpuMicros: number;
  /** Peak resident set size of the process so far, in bytes. */
  maxRss: number;
  connections: number;
}

/** The JSON every contender sends to a new connection, in this order. */
export function identityFrame(name: string = INSTANCE): string {
  return JSON.stringify({ type: "cf_agent_identity", agent: AGENT, name, stateFollows: true });
}

export function stateFrame(state: unknown): string {
  return JSON.stringify({ type: "cf_agent_state", state });
}

export function rpcResultFrame(id: string, result: unknown): string {
  return JSON.stringify({ type: "rpc", id, success: true, result, done: true });
}

export function rpcErrorFrame(id: string, error: string): string {
  return JSON.stringify({ type: "rpc", id, success: false, error });
}

/** The payload every RPC echoes: small, like a typical UI call. */
export const ECHO_PAYLOAD = { text: "hello from the benchmark", n: 42, ok: true };

/** Instance name of room `i` in the reconnect storm (`room-0`, `room-1`, …). */
export function stormRoom(i: number): string {
  return `room-${i}`;
}

/** Close code and reason for a refused token, as Outpost sends them. */
export const UNAUTHORIZED = 4001;

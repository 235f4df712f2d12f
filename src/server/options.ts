import type { Server } from "node:http";
import { resolve } from "node:path";
import type { AgentClass } from "../agent/agent.js";
import type { AuthPolicy } from "../auth/policy.js";
import type { ClusterOptions } from "../cluster/options.js";
import type { Durability } from "../storage/agent-database.js";
import type { RouteFunction } from "./custom-routes.js";
import type { LoggerSetting } from "./logger.js";

/** Options shared by `serve()` and `createAgentServer()`. */
export interface AgentServerOptions<Env = unknown> {
  /** The agents to host, by class name: `{ Counter }` is reached at `/agents/counter/:name`. */
  agents: Record<string, AgentClass>;
  /** Attach to this existing `node:http` server (WebSocket upgrades under the prefix). */
  server?: Server;
  /** Where each instance's SQLite database lives. Default `.outpost` in the working directory. */
  dataDir?: string;
  /** Given to every agent as `this.env`. */
  env?: Env;
  /** Authentication for every connection and request, e.g. `tokenAuth({ keys })`. */
  auth?: AuthPolicy | Promise<AuthPolicy>;
  /** A pino logger, `false`, or `{ level, pretty }`. Default: JSON lines at `info`. */
  logger?: LoggerSetting;
  /** URL prefix of agents. Default `agents`. */
  prefix?: string;
  /**
   * Addresses of your own for agents, next to `/<prefix>/<agent>/<name>`: what a client
   * with `basePath` connects to (Cloudflare's `getAgentByName(...).fetch(request)` in a
   * Worker). Called for every WebSocket upgrade and HTTP request outside the prefix, before
   * authentication; return `{ agent, name }` to send it to that instance, or nothing to
   * leave it alone (HTTP falls through to your handlers, an upgrade gets 404). The
   * credentials are then checked against the instance it names, as for any address.
   *
   * @example
   * route: ({ url, headers }) =>
   *   url.pathname === "/me" ? { agent: "UserAgent", name: userOf(headers) } : undefined
   */
  route?: RouteFunction;
  /** Largest frame accepted, in bytes; larger closes with 1009. Default 1 MiB. */
  maxPayload?: number;
  /** Largest HTTP request body to an agent, in bytes. Default 1 MiB. */
  maxBodyBytes?: number;
  /** Open connections one instance accepts; more are closed with 1013. Default 10,000. */
  maxConnectionsPerInstance?: number;
  /**
   * Live instances this process holds at most. When full, the instance idle longest is
   * evicted; when none is idle, new instances are refused (close 1013 / HTTP 503). Each
   * live instance holds up to three open files (database, WAL, shared memory), so the
   * default of 256 stays well inside the common limit of 1,024 open files.
   */
  maxInstances?: number;
  /** Bytes buffered for a client that does not read before it is dropped. Default 8 MiB. */
  maxBufferedBytes?: number;
  /** Frames waiting behind a slow handler before the client is closed 1013. Default 1,024. */
  maxQueuedFrames?: number;
  /** Longest request URL accepted, in bytes. Default 8 KiB. */
  maxUrlLength?: number;
  /** Milliseconds an idle instance stays in memory. Default 60 s. */
  idleTimeout?: number;
  /** "process" (default): writes survive the process dying; "full": also power loss. */
  durability?: Durability;
  /** How long shutdown waits for running handlers, in ms. Default 5 s. */
  shutdownTimeout?: number;
  /**
   * Milliseconds between pings; a connection that has not answered the previous ping is
   * dropped, so sockets whose network vanished do not stay open. `0` turns it off.
   * Default 30 s.
   */
  heartbeatInterval?: number;
  /**
   * Take the client address from the last `X-Forwarded-For` entry, the one your proxy
   * appended (only behind exactly one proxy you run).
   */
  trustProxy?: boolean;
  /**
   * Run as one node of a cluster on PostgreSQL: `{ postgres: "postgres://…", schema? }`.
   * Any node accepts any client and carries it to the node that owns its instance; see
   * docs/cluster.md.
   */
  cluster?: ClusterOptions;
}

/** Every default in one place; the doc comments above say the same. */
export const DEFAULTS = {
  prefix: "agents",
  dataDir: ".outpost",
  maxPayload: 1024 * 1024,
  maxBodyBytes: 1024 * 1024,
  maxConnectionsPerInstance: 10_000,
  maxInstances: 256,
  maxBufferedBytes: 8 * 1024 * 1024,
  maxQueuedFrames: 1024,
  maxUrlLength: 8 * 1024,
  idleTimeout: 60_000,
  durability: "process" as Durability,
  shutdownTimeout: 5_000,
  heartbeatInterval: 30_000,
  trustProxy: false,
};

export type ResolvedOptions = typeof DEFAULTS;

const COUNTS = [
  "maxPayload",
  "maxBodyBytes",
  "maxConnectionsPerInstance",
  "maxInstances",
  "maxBufferedBytes",
  "maxQueuedFrames",
  "maxUrlLength",
] as const;
const DURATIONS = ["idleTimeout", "shutdownTimeout", "heartbeatInterval"] as const;

/** Apply the defaults and refuse nonsense at startup, naming the option. */
export function resolveOptions(options: AgentServerOptions): ResolvedOptions {
  const resolved: ResolvedOptions = { ...DEFAULTS };
  for (const key of COUNTS) {
    const value = options[key];
    if (value === undefined) continue;
    if (!Number.isInteger(value) || value < 1) {
      throw new TypeError(`serve(): \`${key}\` must be a positive integer, got ${String(value)}`);
    }
    resolved[key] = value;
  }
  for (const key of DURATIONS) {
    const value = options[key];
    if (value === undefined) continue;
    if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
      throw new TypeError(`serve(): \`${key}\` must be a number of milliseconds >= 0`);
    }
    resolved[key] = value;
  }
  if (options.route !== undefined && typeof options.route !== "function") {
    throw new TypeError("serve(): `route` must be a function: (request) => ({ agent, name })");
  }
  if (options.durability !== undefined) {
    if (options.durability !== "process" && options.durability !== "full") {
      throw new TypeError('serve(): `durability` must be "process" or "full"');
    }
    resolved.durability = options.durability;
  }
  if (options.prefix !== undefined) resolved.prefix = options.prefix;
  resolved.dataDir = resolve(options.dataDir ?? DEFAULTS.dataDir);
  resolved.trustProxy = options.trustProxy === true;
  return resolved;
}

import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { ClusterOptionError } from "./errors.js";
import { type LinkTls, linkTls } from "./link-tls.js";

/**
 * The `cluster` option of `serve()`: run this process as one node of a cluster whose shared
 * state lives in PostgreSQL.
 *
 * @example
 * serve({ agents, auth, port: 8787, cluster: { postgres: "postgres://127.0.0.1/app" } });
 */
export interface ClusterOptions {
  /** Connection URL of the PostgreSQL database, `postgres://user@host:port/db`. Required. */
  postgres: string;
  /** Schema that holds every cluster table (a lowercase SQL identifier). Default `outpost`. */
  schema?: string;
  /**
   * Address of this node's link endpoint, which the other nodes dial (`ws://host:port`; also
   * `http://`, `wss://`, `https://`). Default: a free port on 127.0.0.1 — right when every
   * node runs on one machine. Set it, with a port, when they do not: the endpoint then
   * listens on that port on every interface. Clients never use this address.
   */
  advertise?: string;
  /** This node's id in the `nodes` table; unique per running process. Default: host name plus a random suffix. */
  nodeId?: string;
  /** How long a renewed lease lasts, by Postgres's clock. Default 5 000 ms. */
  leaseMs?: number;
  /** How often the lease is renewed. Default 1 000 ms; at most half of `leaseMs - fenceMarginMs`. */
  heartbeatMs?: number;
  /**
   * How long before its lease can expire a node that could not renew stops serving. Covers
   * clock-rate differences and the time it takes to close sockets. Default 1 500 ms.
   */
  fenceMarginMs?: number;
  /** How often revocations and spent tickets are reloaded, in case a notification was missed. Default 5 000 ms. */
  authReloadMs?: number;
  /**
   * The secret nodes prove to each other on their links (at least 32 bytes). Default: one
   * made by the first node and kept in the cluster schema, so every node that can reach
   * the database shares it.
   */
  secret?: string;
  /**
   * Mutual TLS on the links between nodes: `{ cert, key, ca }` as PEM text. Every node
   * presents its certificate and accepts only peers whose certificate `ca` signed; each
   * certificate must name the host its node advertises (advertise `wss://…`). Without it,
   * links are plain TCP, authenticated but readable on the network between the nodes.
   */
  tls?: LinkTls;
}

/** `ClusterOptions` validated, with every default applied. */
export interface ResolvedClusterOptions {
  readonly postgres: string;
  readonly schema: string;
  /** Undefined until the node knows its port: see `advertiseAddress()`. */
  readonly advertise: string | undefined;
  readonly nodeId: string;
  readonly leaseMs: number;
  readonly heartbeatMs: number;
  readonly fenceMarginMs: number;
  readonly authReloadMs: number;
  readonly secret: string | undefined;
  readonly tls: LinkTls | undefined;
}

const DEFAULTS = {
  schema: "outpost",
  // A dead node's instances can be claimed once its lease ran out: the lease bounds the
  // failover time, the margin and two renewals per lease keep a slow round trip from fencing.
  leaseMs: 5_000,
  heartbeatMs: 1_000,
  fenceMarginMs: 1_500,
  authReloadMs: 5_000,
} as const;

// Lowercase only: Postgres folds unquoted names to lowercase, so "Outpost" would name a
// different schema in psql than in Outpost. 63 bytes is Postgres's identifier limit.
const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;
const ADVERTISE_PROTOCOLS = new Set(["ws:", "wss:", "http:", "https:"]);

/**
 * Validate the `cluster` option at startup; every error names the option it is about
 * (`ClusterOptionError`, code `ERR_CLUSTER_OPTION`). The connection URL is never repeated
 * in a message: it may hold a password.
 */
export function resolveClusterOptions(input: unknown): ResolvedClusterOptions {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new ClusterOptionError(
      "cluster",
      "must be an object such as { postgres: 'postgres://…' }",
    );
  }
  const options = input as Record<string, unknown>;
  const known = new Set([
    "postgres",
    "schema",
    "advertise",
    "nodeId",
    "secret",
    "tls",
    ...Object.keys(DEFAULTS).filter((key) => key !== "schema"),
  ]);
  for (const key of Object.keys(options)) {
    if (!known.has(key)) throw new ClusterOptionError(`cluster.${key}`, "is not a cluster option");
  }

  const leaseMs = duration(options, "leaseMs", DEFAULTS.leaseMs, 500);
  const heartbeatMs = duration(options, "heartbeatMs", DEFAULTS.heartbeatMs, 50);
  const fenceMarginMs = duration(options, "fenceMarginMs", DEFAULTS.fenceMarginMs, 50);
  if (fenceMarginMs >= leaseMs) {
    throw new ClusterOptionError(
      "cluster.fenceMarginMs",
      `must be shorter than cluster.leaseMs (${leaseMs} ms)`,
    );
  }
  // Two renewals must fit in the time a lease vouches for, or one slow round trip fences.
  if (heartbeatMs * 2 > leaseMs - fenceMarginMs) {
    throw new ClusterOptionError(
      "cluster.heartbeatMs",
      `must be at most half of cluster.leaseMs - cluster.fenceMarginMs (${(leaseMs - fenceMarginMs) / 2} ms)`,
    );
  }
  const tls = linkTls(options.tls);
  const advertise = options.advertise === undefined ? undefined : advertiseUrl(options.advertise);
  // A wss:// address without `tls` is TLS that something in front of the link port ends.
  if (advertise !== undefined && tls !== undefined && !/^(wss|https):/.test(advertise)) {
    throw new ClusterOptionError(
      "cluster.advertise",
      "must be a wss:// address when cluster.tls is set",
    );
  }
  return {
    postgres: postgresUrl(options.postgres),
    schema: schemaName(options.schema),
    advertise,
    nodeId: nodeId(options.nodeId),
    leaseMs,
    heartbeatMs,
    fenceMarginMs,
    authReloadMs: duration(options, "authReloadMs", DEFAULTS.authReloadMs, 100),
    secret: clusterSecret(options.secret),
    tls,
  };
}

/**
 * The address this node advertises: `cluster.advertise`, or else `ws://<listen host>:<port>`
 * (`wss://` with `cluster.tls`)
 * with a wildcard listen address replaced by 127.0.0.1.
 */
export function advertiseAddress(
  options: ResolvedClusterOptions,
  listen: { hostname: string; port: number },
): string {
  if (options.advertise !== undefined) return options.advertise;
  const wildcard =
    listen.hostname === "" || listen.hostname === "0.0.0.0" || listen.hostname === "::";
  const host = wildcard ? "127.0.0.1" : listen.hostname;
  const scheme = options.tls === undefined ? "ws" : "wss";
  return `${scheme}://${host.includes(":") ? `[${host}]` : host}:${listen.port}`;
}

function postgresUrl(value: unknown): string {
  if (value === undefined || value === "") {
    throw new ClusterOptionError(
      "cluster.postgres",
      "is required: a postgres://user@host:port/database URL",
    );
  }
  if (typeof value !== "string")
    throw new ClusterOptionError("cluster.postgres", "must be a string URL");
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ClusterOptionError(
      "cluster.postgres",
      "is not a URL (expected postgres://user@host:port/database)",
    );
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    throw new ClusterOptionError(
      "cluster.postgres",
      `must start with postgres:// (got ${url.protocol}//)`,
    );
  }
  return value;
}

function schemaName(value: unknown): string {
  if (value === undefined) return DEFAULTS.schema;
  if (typeof value !== "string" || !IDENTIFIER.test(value)) {
    throw new ClusterOptionError(
      "cluster.schema",
      "must be a lowercase SQL identifier: a-z, 0-9 and _, not starting with a digit, at most 63 characters",
    );
  }
  return value;
}

function advertiseUrl(value: unknown): string {
  let url: URL | undefined;
  try {
    url = typeof value === "string" ? new URL(value) : undefined;
  } catch {
    url = undefined;
  }
  if (url === undefined || !ADVERTISE_PROTOCOLS.has(url.protocol) || url.pathname !== "/") {
    throw new ClusterOptionError(
      "cluster.advertise",
      "must be a URL with a host and no path, such as ws://10.0.0.5:8787",
    );
  }
  return `${url.protocol}//${url.host}`;
}

function nodeId(value: unknown): string {
  if (value === undefined) return `${hostname()}-${randomUUID().slice(0, 8)}`;
  if (typeof value !== "string" || value.length === 0 || value.length > 200) {
    throw new ClusterOptionError(
      "cluster.nodeId",
      "must be a non-empty string of at most 200 characters",
    );
  }
  return value;
}

function duration(
  options: Record<string, unknown>,
  key: string,
  fallback: number,
  min: number,
): number {
  const value = options[key];
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > 3_600_000) {
    throw new ClusterOptionError(
      `cluster.${key}`,
      `must be a whole number of milliseconds from ${min} to 3600000`,
    );
  }
  return value;
}

function clusterSecret(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || Buffer.byteLength(value) < 32) {
    throw new ClusterOptionError("cluster.secret", "must be a string of at least 32 bytes");
  }
  return value;
}

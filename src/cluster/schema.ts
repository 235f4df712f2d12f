import type { Sql } from "postgres";

/**
 * Create the cluster's schema and every table of this layer, idempotently: each node runs it
 * at startup. Identifiers are quoted by the client (`sql(name)`), never concatenated.
 *
 * - `nodes`: one row per running node, its advertised address and its lease, renewed by
 *   heartbeats; Postgres's clock decides when a lease has expired.
 * - `owners`: one row per agent instance ever claimed; `epoch` only grows (a released
 *   instance keeps its row with no node, so the next claim still counts up).
 * - `revocations`, `spent_tickets`: the shared auth state (times in ms since the epoch).
 * - `wakeups`: when each instance next has a schedule or queue item due (ms since the
 *   epoch), written by its owner under its epoch; read by every node's waker.
 */
export async function migrate(sql: Sql, schema: string): Promise<void> {
  await sql.begin(async (tx) => {
    // Several nodes starting at once would race on CREATE … IF NOT EXISTS (a unique-key
    // violation in the catalog), so they take turns on a lock named after the schema.
    await tx`SELECT pg_advisory_xact_lock(hashtext(${`outpost.migrate.${schema}`}))`;
    await tx`CREATE SCHEMA IF NOT EXISTS ${tx(schema)}`;
    await tx`
      CREATE TABLE IF NOT EXISTS ${tx(schema)}.nodes (
        id text PRIMARY KEY,
        address text NOT NULL,
        started_at timestamptz NOT NULL DEFAULT now(),
        heartbeat_at timestamptz NOT NULL,
        lease_expires_at timestamptz NOT NULL
      )`;
    await tx`
      CREATE TABLE IF NOT EXISTS ${tx(schema)}.owners (
        instance text PRIMARY KEY,
        node_id text NOT NULL,
        epoch bigint NOT NULL
      )`;
    await tx`
      CREATE TABLE IF NOT EXISTS ${tx(schema)}.revocations (
        kind text NOT NULL CHECK (kind IN ('sub', 'jti')),
        value text NOT NULL,
        revoked_at bigint NOT NULL,
        expires_at bigint NOT NULL,
        PRIMARY KEY (kind, value)
      )`;
    await tx`
      CREATE TABLE IF NOT EXISTS ${tx(schema)}.spent_tickets (
        jti text PRIMARY KEY,
        expires_at bigint NOT NULL
      )`;
    await tx`
      CREATE TABLE IF NOT EXISTS ${tx(schema)}.wakeups (
        instance text PRIMARY KEY,
        next_due_at bigint NOT NULL
      )`;
    // Every instance's durable change log (see wal-store.ts).
    await tx`
      CREATE TABLE IF NOT EXISTS ${tx(schema)}.changes (
        instance text NOT NULL,
        seq bigint NOT NULL,
        chunk integer NOT NULL,
        epoch bigint NOT NULL,
        base boolean NOT NULL,
        page_size integer NOT NULL,
        db_pages integer NOT NULL,
        pages bytea NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (instance, seq, chunk)
      )`;
    // The secret node links prove, made by the first node (see node.ts).
    await tx`
      CREATE TABLE IF NOT EXISTS ${tx(schema)}.cluster_secret (
        id int PRIMARY KEY CHECK (id = 1),
        secret text NOT NULL
      )`;
    // Wakers look for due rows on every scan.
    await tx`CREATE INDEX IF NOT EXISTS wakeups_next_due_at ON ${tx(schema)}.wakeups (next_due_at)`;
    // Prune scans by expiry; without these it reads the whole table every time.
    await tx`CREATE INDEX IF NOT EXISTS revocations_expires_at ON ${tx(schema)}.revocations (expires_at)`;
    await tx`CREATE INDEX IF NOT EXISTS spent_tickets_expires_at ON ${tx(schema)}.spent_tickets (expires_at)`;
  });
}

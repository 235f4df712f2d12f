import { fileURLToPath } from "node:url";
import type { Sql } from "postgres";
import { type NodeProcess, spawnNode } from "./node-process.js";
import { nodeOptions } from "./nodes.js";
import { POSTGRES_URL } from "./postgres.js";

const SCRIPT = fileURLToPath(new URL("./wake-node-child.ts", import.meta.url));

/** The tables wake-node-child.ts writes: the runs its agent made, and its schedules' durable copy. */
export async function createWakeTables(sql: Sql, schema: string): Promise<void> {
  await sql`
    CREATE TABLE ${sql(schema)}.runs (
      instance text NOT NULL, schedule_id text NOT NULL, due bigint NOT NULL, node text NOT NULL,
      at timestamptz NOT NULL DEFAULT clock_timestamp())`;
  await sql`
    CREATE TABLE ${sql(schema)}.sched_copy (
      instance text NOT NULL, id text NOT NULL, row jsonb NOT NULL, PRIMARY KEY (instance, id))`;
}

/** A node that runs schedules and a waker, in a child process (see wake-node-child.ts). */
export function spawnWakeNode(
  schema: string,
  id: string,
  extra: { dataDir: string; scanMs: number; hangMs: number },
): Promise<NodeProcess> {
  return spawnNode({ ...nodeOptions(POSTGRES_URL, schema, id), ...extra }, SCRIPT);
}

/** Every run the agents recorded, oldest first. */
export async function runsOf(
  sql: Sql,
  schema: string,
  instance: string,
): Promise<Array<{ due: number; node: string }>> {
  const rows = await sql<{ due: string; node: string }[]>`
    SELECT due, node FROM ${sql(schema)}.runs WHERE instance = ${instance} ORDER BY at`;
  return rows.map((row) => ({ due: Number(row.due), node: row.node }));
}

/** The wakeup row of `instance` (ms since the epoch), or undefined when it has none. */
export async function wakeupOf(
  sql: Sql,
  schema: string,
  instance: string,
): Promise<number | undefined> {
  const [row] = await sql<{ next_due_at: string }[]>`
    SELECT next_due_at FROM ${sql(schema)}.wakeups WHERE instance = ${instance}`;
  return row === undefined ? undefined : Number(row.next_due_at);
}

/** Resolve once Postgres's clock says `nodeId`'s lease has expired. */
export async function leaseExpired(sql: Sql, schema: string, nodeId: string): Promise<boolean> {
  const [row] = await sql`
    SELECT lease_expires_at < now() AS expired FROM ${sql(schema)}.nodes WHERE id = ${nodeId}`;
  return row?.expired === true;
}

import { randomBytes } from "node:crypto";
import postgres, { type Sql } from "postgres";
import { migrate } from "../../src/cluster/schema.js";

/** The machine's PostgreSQL (trust auth), overridable for other setups. */
export const POSTGRES_URL =
  process.env.OUTPOST_TEST_POSTGRES ?? "postgres://postgres@127.0.0.1:5432/test";

/** Host and port of `POSTGRES_URL`, for a proxy in front of it. */
export const POSTGRES_TARGET = {
  host: new URL(POSTGRES_URL).hostname || "127.0.0.1",
  port: Number(new URL(POSTGRES_URL).port || 5432),
};

/** A schema of its own for one test file, with the cluster tables; `drop()` removes it. */
export interface TestSchema {
  readonly schema: string;
  /** A client for the test's own checks (not one of the nodes'). */
  readonly sql: Sql;
  drop(): Promise<void>;
}

/** Create a randomly named schema and migrate it. */
export async function createTestSchema(): Promise<TestSchema> {
  const schema = `test_${randomBytes(6).toString("hex")}`;
  const sql = postgres(POSTGRES_URL, { max: 2, onnotice: () => {} });
  await migrate(sql, schema);
  return {
    schema,
    sql,
    async drop() {
      await sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`;
      await sql.end({ timeout: 1 });
    },
  };
}

/** `url` with its port replaced, to reach Postgres through a proxy. */
export function viaPort(url: string, port: number): string {
  const parsed = new URL(url);
  parsed.hostname = "127.0.0.1";
  parsed.port = String(port);
  return parsed.toString();
}

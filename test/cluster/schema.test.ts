import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import { migrate } from "../../src/cluster/schema.js";
import { POSTGRES_URL } from "./postgres.js";

const schema = `test_${randomBytes(6).toString("hex")}`;
const clients = Array.from({ length: 4 }, () =>
  postgres(POSTGRES_URL, { max: 1, onnotice: () => {} }),
);

afterAll(async () => {
  await clients[0]!`DROP SCHEMA IF EXISTS ${clients[0]!(schema)} CASCADE`;
  await Promise.all(clients.map((sql) => sql.end({ timeout: 1 })));
});

describe("cluster schema", () => {
  it("migrate creates every table once, from nodes starting at the same moment, and again without harm", async () => {
    await Promise.all(clients.map((sql) => migrate(sql, schema)));
    await migrate(clients[0]!, schema);
    const sql = clients[0]!;
    const tables = await sql<{ table_name: string }[]>`
      SELECT table_name FROM information_schema.tables WHERE table_schema = ${schema}
      ORDER BY table_name`;
    expect(tables.map((t) => t.table_name)).toEqual([
      "changes",
      "cluster_secret",
      "nodes",
      "owners",
      "revocations",
      "spent_tickets",
      "wakeups",
    ]);
    const owners = await sql<{ column_name: string; data_type: string; is_nullable: string }[]>`
      SELECT column_name, data_type, is_nullable FROM information_schema.columns
      WHERE table_schema = ${schema} AND table_name = 'owners' ORDER BY ordinal_position`;
    expect(owners).toEqual([
      { column_name: "instance", data_type: "text", is_nullable: "NO" },
      { column_name: "node_id", data_type: "text", is_nullable: "NO" },
      { column_name: "epoch", data_type: "bigint", is_nullable: "NO" },
    ]);
  });

  it("quotes the schema name: a name that would be SQL stays a name", async () => {
    const odd = `test_${randomBytes(4).toString("hex")}"; DROP SCHEMA public; --`;
    const sql = clients[1]!;
    try {
      await migrate(sql, odd);
      const [row] = await sql`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = ${odd}`;
      expect(row!.n).toBe(1);
      const [pub] = await sql`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'public'`;
      expect(pub!.n).toBe(1);
    } finally {
      await sql`DROP SCHEMA IF EXISTS ${sql(odd)} CASCADE`;
    }
  });
});

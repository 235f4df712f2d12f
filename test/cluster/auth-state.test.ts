import { performance } from "node:perf_hooks";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { RevocationEntry } from "../../src/auth/state-store.js";
import { PostgresAuthStateStore } from "../../src/cluster/auth-state.js";
import { waitFor } from "../helpers/wait.js";
import {
  createTestSchema,
  POSTGRES_TARGET,
  POSTGRES_URL,
  type TestSchema,
  viaPort,
} from "./postgres.js";
import { startTcpProxy, type TcpProxy } from "./tcp-proxy.js";

let db: TestSchema;
const open: PostgresAuthStateStore[] = [];
let proxy: TcpProxy | undefined;

beforeAll(async () => {
  db = await createTestSchema();
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((store) => store.close()));
  await proxy?.close();
  proxy = undefined;
});

afterAll(async () => {
  await db.drop();
});

async function openStore(
  url = POSTGRES_URL,
  authReloadMs = 60_000,
): Promise<PostgresAuthStateStore> {
  const store = await PostgresAuthStateStore.open({
    postgres: url,
    schema: db.schema,
    authReloadMs,
  });
  open.push(store);
  return store;
}

function revocation(kind: "sub" | "jti", value: string): RevocationEntry {
  const now = Date.now();
  return { kind, value, revokedAt: now, expiresAt: now + 10 * 60_000 };
}

/** Subscribe and keep every entry, with the monotonic time it arrived. */
function collect(store: PostgresAuthStateStore): { entry: RevocationEntry; at: number }[] {
  const seen: { entry: RevocationEntry; at: number }[] = [];
  store.subscribe((entry) => seen.push({ entry, at: performance.now() }));
  return seen;
}

describe("shared auth state", () => {
  it("revocation pushed: one added on store A reaches store B's subscriber within 1 s", async () => {
    // The periodic reload is an hour away here: only the notification can deliver in time.
    const a = await openStore(POSTGRES_URL, 3_600_000);
    const b = await openStore(POSTGRES_URL, 3_600_000);
    const seenByB = collect(b);
    const seenByA = collect(a);
    const latencies: number[] = [];
    for (let i = 0; i < 5; i++) {
      const entry = revocation(i % 2 === 0 ? "sub" : "jti", `pushed-${i}`);
      const sentAt = performance.now();
      await a.addRevocation(entry);
      await waitFor(
        () => seenByB.some((s) => s.entry.value === entry.value),
        "B to hear of it",
        5_000,
      );
      const arrived = seenByB.find((s) => s.entry.value === entry.value)!;
      expect(arrived.entry).toEqual(entry);
      latencies.push(arrived.at - sentAt);
    }
    console.log(
      `revocation A → B subscriber: ${latencies.map((ms) => ms.toFixed(1)).join(", ")} ms`,
    );
    expect(Math.max(...latencies)).toBeLessThan(1_000);
    // A is not told of its own revocations: it already knows them.
    expect(seenByA).toEqual([]);
    expect(seenByB).toHaveLength(5);
  });

  it("a ticket spent through A is refused through B, and concurrent spends on both let exactly one through", async () => {
    const a = await openStore();
    const b = await openStore();
    const exp = Date.now() + 60_000;
    expect(await a.spendTicket("ticket-1", exp)).toBe(true);
    expect(await b.spendTicket("ticket-1", exp)).toBe(false);
    expect(await a.spendTicket("ticket-1", exp)).toBe(false);

    const attempts = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).spendTicket("ticket-race", exp)),
    );
    expect(attempts.filter(Boolean)).toHaveLength(1);
  });

  it("revocations and spent tickets survive closing and reopening every store (a whole cluster restart)", async () => {
    const a = await openStore();
    const b = await openStore();
    const entry = revocation("sub", "restart-user");
    await a.addRevocation(entry);
    expect(await b.spendTicket("restart-ticket", Date.now() + 60_000)).toBe(true);
    await Promise.all(open.splice(0).map((store) => store.close()));

    const c = await openStore();
    const d = await openStore();
    const loaded = await c.load();
    expect(loaded.revocations).toContainEqual(entry);
    expect(loaded.spentTickets.map((t) => t.jti)).toContain("restart-ticket");
    expect(await d.spendTicket("restart-ticket", Date.now() + 60_000)).toBe(false);
    expect((await d.load()).revocations).toContainEqual(entry);
  });

  for (const mode of ["refuse", "blackhole"] as const) {
    it(`a missed NOTIFY (B's connection cut while A revokes${mode === "blackhole" ? ", silently" : ""}) is caught up once B reaches Postgres again`, async () => {
      proxy = await startTcpProxy(POSTGRES_TARGET);
      const a = await openStore(POSTGRES_URL, 500);
      const b = await openStore(viaPort(POSTGRES_URL, proxy.port), 500);
      const seenByB = collect(b);
      proxy.cut(mode);
      const entry = revocation("jti", `revoked-while-cut-${mode}`);
      await a.addRevocation(entry);
      // Nothing can reach B while it is cut off.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(seenByB).toEqual([]);
      const restoredAt = performance.now();
      proxy.restore();
      await waitFor(() => seenByB.length > 0, "B to catch up after the cut", 15_000);
      console.log(
        `${mode}: missed revocation caught up ${Math.round(seenByB[0]!.at - restoredAt)} ms after the restore`,
      );
      expect(seenByB.map((s) => s.entry)).toEqual([entry]);
      // And B hears of the next one by notification again.
      const next = revocation("sub", `after-cut-${mode}`);
      const sentAt = performance.now();
      await a.addRevocation(next);
      await waitFor(() => seenByB.length > 1, "B to hear of the next revocation", 5_000);
      expect(seenByB[1]!.entry).toEqual(next);
      console.log(
        `${mode}: next revocation heard after ${(seenByB[1]!.at - sentAt).toFixed(1)} ms`,
      );
    });
  }

  it("the periodic reload delivers a revocation whose notification never came", async () => {
    const b = await openStore(POSTGRES_URL, 500);
    const seenByB = collect(b);
    // Written straight into the table, with no NOTIFY at all.
    const entry = revocation("sub", "silent-user");
    const { sql, schema } = db;
    const writtenAt = performance.now();
    await sql`
      INSERT INTO ${sql(schema)}.revocations (kind, value, revoked_at, expires_at)
      VALUES (${entry.kind}, ${entry.value}, ${entry.revokedAt}, ${entry.expiresAt})`;
    await waitFor(() => seenByB.length > 0, "the periodic reload", 5_000);
    console.log(
      `un-notified revocation reloaded after ${Math.round(seenByB[0]!.at - writtenAt)} ms`,
    );
    expect(seenByB.map((s) => s.entry)).toEqual([entry]);
  });

  it("a later revocation of a subject moves its time forward on every store; an earlier one does not move it back", async () => {
    const a = await openStore();
    const b = await openStore();
    const seenByB = collect(b);
    const first = revocation("sub", "again");
    await a.addRevocation(first);
    const later = { ...first, revokedAt: first.revokedAt + 5_000 };
    await a.addRevocation(later);
    await a.addRevocation({ ...first, revokedAt: first.revokedAt - 5_000 });
    await waitFor(() => seenByB.length >= 2, "both revocations at B", 5_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(seenByB.map((s) => s.entry.revokedAt)).toEqual([first.revokedAt, later.revokedAt]);
    expect((await b.load()).revocations.filter((r) => r.value === "again")).toEqual([later]);
  });

  it("prune drops expired revocations and tickets and keeps the rest", async () => {
    const a = await openStore();
    const now = Date.now();
    await a.addRevocation({
      kind: "jti",
      value: "old",
      revokedAt: now - 2_000,
      expiresAt: now - 1_000,
    });
    await a.addRevocation({ kind: "jti", value: "young", revokedAt: now, expiresAt: now + 60_000 });
    await a.spendTicket("old-ticket", now - 1_000);
    await a.spendTicket("young-ticket", now + 60_000);
    await a.prune(now);
    const { sql, schema } = db;
    const revocations =
      await sql`SELECT value FROM ${sql(schema)}.revocations WHERE value IN ('old', 'young')`;
    expect(revocations.map((r) => r.value)).toEqual(["young"]);
    const tickets = await sql`
      SELECT jti FROM ${sql(schema)}.spent_tickets WHERE jti IN ('old-ticket', 'young-ticket')`;
    expect(tickets.map((t) => t.jti)).toEqual(["young-ticket"]);
    // A pruned ticket id can be spent again: its token has expired, so the verifier refuses it first.
    expect(await a.spendTicket("old-ticket", now + 60_000)).toBe(true);
  });
});

import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import { decodeJwt } from "jose";
import { afterEach, describe, expect, it } from "vitest";
import { createKeySet, issueToken, REASONS, tokenAuth } from "../../src/auth/index.js";
import { AUTH_STATE_FILE, openAuthStateStore } from "../../src/storage/auth-state.js";
import { Counter } from "../fixtures/agents.js";
import { type AuthChildServer, killChild, spawnAuthServer } from "../helpers/child.js";
import { startServer, type TestServer, tempDir, wsUrl } from "../helpers/server.js";
import { nextSecond } from "../helpers/wait.js";
import { connect, refused } from "../helpers/ws-client.js";

/** Property 12: revocations and spent tickets are kept in the data directory. */

const SECRET = "auth-state-suite-secret-0123456789abcdef";
const ROOM = { agent: "counter", name: "room" };

let data: ReturnType<typeof tempDir> | undefined;
let server: TestServer | undefined;
let child: AuthChildServer | undefined;

afterEach(async () => {
  await server?.stop();
  server = undefined;
  await killChild(child);
  child = undefined;
  data?.remove();
  data = undefined;
});

function rows(dataDir: string): { revocations: number; tickets: number } {
  const db = new Database(join(dataDir, AUTH_STATE_FILE), { readonly: true });
  try {
    const count = (table: string) =>
      (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    return { revocations: count("revocations"), tickets: count("spent_tickets") };
  } finally {
    db.close();
  }
}

describe("SqliteAuthStateStore", () => {
  it("spends a ticket id once, atomically, until it expires", async () => {
    data = tempDir();
    const store = openAuthStateStore(data.dir);
    const later = Date.now() + 60_000;
    expect(await store.spendTicket("t1", later)).toBe(true);
    expect(await store.spendTicket("t1", later)).toBe(false);
    expect(await store.spendTicket("old", Date.now() - 1)).toBe(true);
    // An expired spend no longer blocks (its token is refused as expired anyway).
    expect(await store.spendTicket("old", later)).toBe(true);
    await store.close();
  });

  it("loads what is not expired and prunes what is", async () => {
    data = tempDir();
    const now = Date.now();
    const store = openAuthStateStore(data.dir, "full");
    await store.addRevocation({
      kind: "sub",
      value: "ada",
      revokedAt: now,
      expiresAt: now + 60_000,
    });
    await store.addRevocation({
      kind: "jti",
      value: "gone",
      revokedAt: now - 9,
      expiresAt: now - 1,
    });
    await store.spendTicket("kept", now + 60_000);
    await store.spendTicket("stale", now - 1);
    expect(await store.load()).toEqual({
      revocations: [{ kind: "sub", value: "ada", revokedAt: now, expiresAt: now + 60_000 }],
      spentTickets: [{ jti: "kept", expiresAt: now + 60_000 }],
    });
    await store.prune(now);
    await store.close();
    expect(rows(data.dir)).toEqual({ revocations: 1, tickets: 1 });
  });

  it("never moves a subject's revocation back in time", async () => {
    data = tempDir();
    const store = openAuthStateStore(data.dir);
    const now = Date.now();
    await store.addRevocation({ kind: "sub", value: "ada", revokedAt: now, expiresAt: now + 9e5 });
    await store.addRevocation({
      kind: "sub",
      value: "ada",
      revokedAt: now - 5,
      expiresAt: now + 1,
    });
    expect((await store.load()).revocations).toEqual([
      { kind: "sub", value: "ada", revokedAt: now, expiresAt: now + 9e5 },
    ]);
    await store.close();
  });
});

describe("auth state survives a restart (property 12)", () => {
  it("keeps revocations by sub and by jti, and spent tickets, across a server restart", async () => {
    data = tempDir();
    const keys = await createKeySet({ secret: SECRET });
    const auth = () => tokenAuth({ keys, singleUse: true, rateLimit: false });
    const url = (s: TestServer, t: string) => wsUrl(s, `/agents/counter/room?token=${t}`);
    server = await startServer({ Counter }, { dataDir: data.dir, auth: auth() });
    const ticket = await issueToken(keys, { sub: "ada", ...ROOM });
    await (await connect(url(server, ticket))).close();
    const mallorys = await issueToken(keys, { sub: "mallory", ...ROOM });
    const leaked = await issueToken(keys, { sub: "ada", ...ROOM, jti: "leaked-1" });
    await server.revoke({ sub: "mallory" });
    await server.revoke({ jti: "leaked-1" });
    await server.stop();

    // A new server with a new policy: nothing is remembered in memory.
    server = await startServer({ Counter }, { dataDir: data.dir, auth: auth() });
    expect(await refused(url(server, ticket))).toMatchObject({
      code: REASONS.token_replayed.closeCode,
      reason: "token already used",
    });
    expect((await refused(url(server, mallorys))).code).toBe(REASONS.token_revoked.closeCode);
    expect((await refused(url(server, leaked))).code).toBe(REASONS.token_revoked.closeCode);
    // Nobody else is affected.
    await (await connect(url(server, await issueToken(keys, { sub: "ada", ...ROOM })))).close();
  });

  it("keeps them after kill -9", async () => {
    data = tempDir();
    const keys = await createKeySet({ secret: SECRET });
    const url = (port: number, t: string) =>
      `ws://127.0.0.1:${port}/agents/counter/room?token=${t}`;
    child = await spawnAuthServer(data.dir, SECRET);
    const ticket = await issueToken(keys, { sub: "ada", ...ROOM });
    await (await connect(url(child.port, ticket))).close();
    const mallorys = await issueToken(keys, { sub: "mallory", ...ROOM });
    const leaked = await issueToken(keys, { sub: "ada", ...ROOM, jti: "leaked-2" });
    const live = await connect(
      url(child.port, await issueToken(keys, { sub: "mallory", ...ROOM })),
    );
    expect(await child.revoke({ sub: "mallory" })).toBe(1);
    expect((await live.closed).code).toBe(REASONS.token_revoked.closeCode);
    await child.revoke({ jti: "leaked-2" });
    // Straight after the acknowledgement, with no chance to shut down cleanly.
    child.child.kill("SIGKILL");
    expect(await child.exited).toMatchObject({ signal: "SIGKILL" });

    child = await spawnAuthServer(data.dir, SECRET);
    expect((await refused(url(child.port, ticket))).code).toBe(REASONS.token_replayed.closeCode);
    expect((await refused(url(child.port, mallorys))).code).toBe(REASONS.token_revoked.closeCode);
    expect((await refused(url(child.port, leaked))).code).toBe(REASONS.token_revoked.closeCode);
  });

  it("prunes entries once no token they refuse can still be valid", async () => {
    data = tempDir();
    const keys = await createKeySet({ secret: SECRET });
    const auth = () =>
      tokenAuth({ keys, singleUse: true, rateLimit: false, maxLifetime: 2, clockTolerance: 0 });
    server = await startServer({ Counter }, { dataDir: data.dir, auth: auth() });
    // A full 2 s, so a slow connect on a loaded machine does not find it already expired.
    await nextSecond();
    const ticket = await issueToken(keys, { sub: "ada", ...ROOM, ttl: 2 });
    const exp = Number(decodeJwt(ticket).exp);
    await (await connect(wsUrl(server, `/agents/counter/room?token=${ticket}`))).close();
    const revokedAt = Date.now();
    await server.revoke({ sub: "mallory", jti: "some-id" });
    await server.stop();
    expect(rows(data.dir)).toEqual({ revocations: 2, tickets: 1 });
    // Both the spent ticket (at `exp`) and the revocations (2 s, the maximum lifetime, after
    // they were made) can be pruned once this has passed.
    await sleep(Math.max(exp * 1_000, revokedAt + 2_000) - Date.now() + 100);
    server = await startServer({ Counter }, { dataDir: data.dir, auth: auth() });
    // The store is opened (and pruned) before the first request is served.
    await fetch(`http://127.0.0.1:${server.port}/healthz`);
    await server.stop();
    server = undefined;
    expect(rows(data.dir)).toEqual({ revocations: 0, tickets: 0 });
  });
});

import { beforeAll, describe, expect, it } from "vitest";
import {
  type AuthRequest,
  type AuthStateStore,
  createKeySet,
  issueToken,
  type KeySet,
  type RevocationEntry,
  tokenAuth,
} from "../../src/auth/index.js";
import { waitFor } from "../helpers/wait.js";

/**
 * The policy's use of an `AuthStateStore`, against an in-memory store that stands for a
 * shared one (another node writes to it, pushes to it, or fails).
 */

class FakeStore implements AuthStateStore {
  revocations: RevocationEntry[] = [];
  spent = new Map<string, number>();
  listeners = new Set<(entry: RevocationEntry) => void>();
  failing = false;
  closed = false;

  async load() {
    if (this.closed) throw new Error("closed");
    const now = Date.now();
    return {
      revocations: this.revocations.filter((r) => r.expiresAt > now),
      spentTickets: [...this.spent].map(([jti, expiresAt]) => ({ jti, expiresAt })),
    };
  }
  async addRevocation(entry: RevocationEntry) {
    if (this.failing) throw new Error("store down");
    this.revocations.push(entry);
  }
  async spendTicket(jti: string, expiresAt: number) {
    if (this.failing) throw new Error("store down");
    if ((this.spent.get(jti) ?? 0) > Date.now()) return false;
    this.spent.set(jti, expiresAt);
    return true;
  }
  async prune(now: number) {
    this.revocations = this.revocations.filter((r) => r.expiresAt > now);
  }
  subscribe(listener: (entry: RevocationEntry) => void) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  async close() {
    this.closed = true;
  }
  /** Another node revokes: written and pushed. */
  push(entry: RevocationEntry) {
    this.revocations.push(entry);
    for (const listener of this.listeners) listener(entry);
  }
}

let keys: KeySet;
beforeAll(async () => {
  keys = await createKeySet({ secret: "durable-state-suite-secret-0123456789ab" });
});

const request = (token: string): AuthRequest => ({
  agent: "chat",
  name: "room-1",
  url: new URL(`ws://h/agents/chat/room-1?token=${token}`),
  headers: new Headers(),
  remoteAddress: "192.0.2.1",
  websocket: true,
});
const token = (extra: Partial<Parameters<typeof issueToken>[1]> = {}) =>
  issueToken(keys, { sub: "ada", agent: "chat", name: "room-1", ...extra });
const hour = () => Date.now() + 3_600_000;

describe("durable auth state in the policy", () => {
  it("loads revocations and spent tickets before it answers", async () => {
    const store = new FakeStore();
    const now = Date.now();
    store.revocations.push({ kind: "sub", value: "mallory", revokedAt: now, expiresAt: hour() });
    store.revocations.push({ kind: "jti", value: "leaked", revokedAt: now, expiresAt: hour() });
    store.spent.set("used-before-restart", hour());
    const policy = tokenAuth({ keys, singleUse: true, rateLimit: false });
    await policy.useStateStore?.(store);
    const before = await token({ sub: "mallory" });
    await expect(policy.authenticate(request(before))).rejects.toMatchObject({
      code: "token_revoked",
    });
    await expect(
      policy.authenticate(request(await token({ jti: "leaked" }))),
    ).rejects.toMatchObject({
      code: "token_revoked",
    });
    await expect(
      policy.authenticate(request(await token({ jti: "used-before-restart" }))),
    ).rejects.toMatchObject({ code: "token_replayed" });
    await expect(policy.authenticate(request(await token()))).resolves.toBeTruthy();
  });

  it("writes revocations through, kept as long as a token they refuse can live", async () => {
    const store = new FakeStore();
    const policy = tokenAuth({ keys, maxLifetime: 600, clockTolerance: 5 });
    await policy.useStateStore?.(store);
    const before = Date.now();
    await policy.revoke({ sub: "ada", jti: "t-1" });
    expect(store.revocations.map((r) => [r.kind, r.value])).toEqual([
      ["sub", "ada"],
      ["jti", "t-1"],
    ]);
    for (const entry of store.revocations) {
      expect(entry.revokedAt).toBeGreaterThanOrEqual(before);
      expect(entry.expiresAt - entry.revokedAt).toBe(610_000);
    }
  });

  it("refuses a ticket another node already spent", async () => {
    const store = new FakeStore();
    const policy = tokenAuth({ keys, singleUse: true, rateLimit: false });
    await policy.useStateStore?.(store);
    const ticket = await token({ jti: "spent-elsewhere" });
    store.spent.set("spent-elsewhere", hour());
    await expect(policy.authenticate(request(ticket))).rejects.toMatchObject({
      code: "token_replayed",
    });
  });

  it("takes a revocation pushed by another node at once", async () => {
    const store = new FakeStore();
    const policy = tokenAuth({ keys });
    await policy.useStateStore?.(store);
    const session = await policy.authenticate(request(await token()));
    store.push({ kind: "sub", value: "ada", revokedAt: Date.now(), expiresAt: hour() });
    expect(policy.isRevoked(session)).toBe(true);
    expect(() => policy.authorize(session, "rpc")).toThrow(
      expect.objectContaining({ code: "token_revoked", closeCode: 4009 }),
    );
  });

  it("tells the server once of each revocation made elsewhere, so it can close live connections", async () => {
    const store = new FakeStore();
    const policy = tokenAuth({ keys, stateReloadInterval: 20 });
    const heard: string[] = [];
    policy.onRevocation?.((entry) => heard.push(`${entry.kind}:${entry.value}`));
    await policy.useStateStore?.(store);
    const entry: RevocationEntry = {
      kind: "sub",
      value: "ada",
      revokedAt: Date.now(),
      expiresAt: hour(),
    };
    store.push(entry);
    store.push(entry);
    // Reloads bring it again; it is news only once.
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(heard).toEqual(["sub:ada"]);
    // This node's own revocations are the server's doing, not news from elsewhere.
    await policy.revoke({ jti: "mine" });
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(heard).toEqual(["sub:ada"]);
    await store.close();
  });

  it("reloads the store periodically, for changes it cannot push", async () => {
    const store = new FakeStore();
    const policy = tokenAuth({ keys, stateReloadInterval: 20 });
    await policy.useStateStore?.(bind(store));
    const session = await policy.authenticate(request(await token({ jti: "later" })));
    store.revocations.push({
      kind: "jti",
      value: "later",
      revokedAt: Date.now(),
      expiresAt: hour(),
    });
    await waitFor(() => policy.isRevoked(session), "the reload to bring the revocation");
    await store.close();
  });

  it("fails closed, as the server's error and not the client's, when the store is down", async () => {
    const store = new FakeStore();
    const policy = tokenAuth({ keys, singleUse: true, rateLimit: { failures: 1 } });
    await policy.useStateStore?.(store);
    store.failing = true;
    await expect(policy.authenticate(request(await token()))).rejects.toMatchObject({
      code: "internal_error",
      closeCode: 1011,
    });
    // Not counted: with a limit of one failure, the client gets in once the store is back.
    store.failing = false;
    await expect(policy.authenticate(request(await token()))).resolves.toBeTruthy();
    // A revocation the store could not take is still in force here, and reported.
    store.failing = true;
    const written = policy.revoke({ sub: "ada" });
    await expect(written).rejects.toThrow("store down");
    store.failing = false;
    await expect(policy.authenticate(request(await token()))).rejects.toMatchObject({
      code: "token_revoked",
    });
  });
});

/** The store's methods bound to it, so it can be passed as a plain object. */
function bind(store: FakeStore): AuthStateStore {
  return {
    load: () => store.load(),
    addRevocation: (entry) => store.addRevocation(entry),
    spendTicket: (jti, expiresAt) => store.spendTicket(jti, expiresAt),
    prune: (now) => store.prune(now),
    close: () => store.close(),
  };
}

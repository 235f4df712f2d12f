import { createHook } from "node:async_hooks";
import { decodeProtectedHeader, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { benchKeySet, createBenchKeys, forgedToken } from "../../bench/tokens.js";
import { issueToken, type KeySet, tokenAuth } from "../../src/auth/index.js";
import { Agent } from "../../src/index.js";
import { startServer, type TestServer, wsUrl } from "../helpers/server.js";

/**
 * Every promise on the connect path costs a turn, and with `getCurrentAgent()`'s
 * AsyncLocalStorage active a hook call when it is made and each time it settles. The floor
 * (bare ws + jose) makes the promises of the signature check and one more; these budgets
 * keep Outpost's own near that.
 */
class Room extends Agent<unknown, { n: number }> {
  override initialState = { n: 0 };
}

/** Promises made on this thread while `work` runs to its callback. */
function countPromises(work: (done: () => void) => void): Promise<number> {
  return new Promise((resolve) => {
    let made = 0;
    const hook = createHook({
      init(_id, type) {
        if (type === "PROMISE") made++;
      },
    }).enable();
    work(() => {
      hook.disable();
      resolve(made);
    });
  });
}

/** Run `step` for each of `count` items one after another, callbacks only (no promises). */
function inSequence(count: number, step: (i: number, next: () => void) => void) {
  return (done: () => void) => {
    const run = (i: number) => (i === count ? done() : step(i, () => run(i + 1)));
    run(0);
  };
}

const ROUNDS = 20;
let keys: KeySet;
let server: TestServer;
let tokens: string[];
let forged: string;
/** Promises of one signature check with jose alone, as the floor makes it. */
let floor: number;

beforeAll(async () => {
  const benchKeys = await createBenchKeys();
  keys = await benchKeySet(benchKeys, "EdDSA");
  server = await startServer({ Room }, { auth: tokenAuth({ keys, rateLimit: false }) });
  tokens = await Promise.all(
    Array.from({ length: ROUNDS + 1 }, (_, i) =>
      issueToken(keys, { sub: `user-${i}`, agent: "room", name: "main", ttl: 600 }),
    ),
  );
  forged = await forgedToken(benchKeys);
  // The instance is running before anything is counted.
  await new Promise<void>((resolve) => connectOnce(tokens[ROUNDS]!, resolve));
  const resolved = keys.resolveKey(decodeProtectedHeader(tokens[0]!));
  const { key, algorithm } = await resolved;
  const options = { algorithms: [algorithm], audience: "outpost", issuer: "outpost" };
  floor =
    (await countPromises(
      inSequence(ROUNDS, (i, next) => {
        jwtVerify(tokens[i]!, key, options).then(next);
      }),
    )) / ROUNDS;
}, 60_000);

afterAll(async () => {
  await server?.stop();
});

/** Open, wait for the state frame, close, and wait until the server has let the socket go. */
function connectOnce(token: string, done: () => void): void {
  const ws = new WebSocket(wsUrl(server, `/agents/room/main?token=${token}`));
  ws.on("error", () => {});
  ws.on("message", (data: Buffer) => {
    if (data.toString().includes('"cf_agent_state"')) ws.close();
  });
  ws.on("close", () => whenIdle(done));
}

/** Refused: wait for the close and for the server to be done with it. */
function refusedOnce(token: string, done: (code: number) => void): void {
  const ws = new WebSocket(wsUrl(server, `/agents/room/main?token=${token}`));
  ws.on("error", () => {});
  ws.on("close", (code) => whenIdle(() => done(code)));
}

function whenIdle(done: () => void): void {
  if (server.stats().connections === 0) setTimeout(done, 5);
  else setTimeout(() => whenIdle(done), 5);
}

describe("connect cost", () => {
  it("a connect to a running instance makes at most 8 promises besides its token's signature check", async () => {
    const made = await countPromises(
      inSequence(ROUNDS, (i, next) => connectOnce(tokens[i]!, next)),
    );
    const own = made / ROUNDS - floor;
    expect(floor).toBeGreaterThan(0);
    expect(own).toBeLessThanOrEqual(8);
  });

  it("a refused token makes at most 8 promises besides its signature check", async () => {
    const codes: number[] = [];
    const made = await countPromises(
      inSequence(ROUNDS, (_i, next) =>
        refusedOnce(forged, (code) => {
          codes.push(code);
          next();
        }),
      ),
    );
    expect(codes).toEqual(Array(ROUNDS).fill(4001));
    expect(made / ROUNDS - floor).toBeLessThanOrEqual(8);
  });
});

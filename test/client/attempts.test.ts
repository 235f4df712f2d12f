import { describe, expect, it } from "vitest";
import { Attempts, type SocketClose } from "../../src/client/attempts.js";
import { resolveReconnectOptions } from "../../src/client/reconnect.js";

const options = resolveReconnectOptions({
  minDelay: 100,
  maxDelay: 1000,
  jitter: 0,
  maxAuthRetries: 2,
  maxUnreachableRetries: 1,
  maxRetries: 5,
  minUptime: 5000,
});
const target = { agent: "counter", name: "room", where: "127.0.0.1:9" };

function closed(code: number, more: Partial<SocketClose> = {}): SocketClose {
  return {
    code,
    reason: "",
    close: { code, reason: "" },
    failure: undefined,
    openFor: undefined,
    ...more,
  };
}

describe("Attempts", () => {
  it("backs off exponentially from one failed attempt to the next, with the query reason reconnect", () => {
    const attempts = new Attempts(options);
    const delays: number[] = [];
    for (let i = 0; i < 4; i++) {
      attempts.begin();
      const verdict = attempts.afterClose(closed(1006), target);
      expect(verdict).toMatchObject({
        retry: true,
        status: { state: "connecting", attempt: i + 2 },
      });
      delays.push(attempts.takeDelay());
    }
    expect(delays).toEqual([100, 200, 400, 800]);
    expect(attempts.takeDelay()).toBe(0);
    expect(attempts.begin()).toBe("reconnect");
  });

  it("starts the backoff over after a connection that stayed up minUptime", () => {
    const attempts = new Attempts(options);
    for (let i = 0; i < 3; i++) {
      attempts.begin();
      attempts.afterClose(closed(1006), target);
    }
    expect(attempts.takeDelay()).toBe(400);
    attempts.begin();
    attempts.accepted();
    attempts.afterClose(closed(1006, { openFor: 4999 }), target);
    expect(attempts.takeDelay()).toBe(800);
    attempts.begin();
    attempts.afterClose(closed(1006, { openFor: 5000 }), target);
    expect(attempts.takeDelay()).toBe(100);
  });

  it("answers a 4001 with the query reason unauthorized, and gives up after maxAuthRetries in a row", () => {
    const attempts = new Attempts(options);
    for (let i = 0; i < 2; i++) {
      attempts.begin();
      expect(attempts.afterClose(closed(4001), target)).toMatchObject({ retry: true });
      expect(attempts.begin()).toBe("unauthorized");
    }
    expect(attempts.afterClose(closed(4001), target)).toEqual({
      retry: false,
      code: "unauthorized",
      message: "credentials refused 3 times",
    });
  });

  it("counts refused credentials afresh once a connection is accepted", () => {
    const attempts = new Attempts(options);
    attempts.begin();
    attempts.afterClose(closed(4001), target);
    attempts.afterClose(closed(4001), target);
    attempts.accepted();
    expect(attempts.afterClose(closed(4001), target)).toMatchObject({ retry: true });
  });

  it("stops at once on 4003, 4004 and 4009, naming the agent and the server for 4004", () => {
    const attempts = new Attempts(options);
    expect(attempts.afterClose(closed(4003), target)).toMatchObject({
      retry: false,
      code: "forbidden",
    });
    expect(attempts.afterClose(closed(4009), target)).toMatchObject({
      retry: false,
      code: "revoked",
    });
    expect(attempts.afterClose(closed(4004, { reason: "agents here: room" }), target)).toEqual({
      retry: false,
      code: "not_found",
      message: 'no agent "counter" at 127.0.0.1:9: agents here: room',
    });
  });

  it("gives up on a server that was never reached after maxUnreachableRetries, but not on one that was", () => {
    const refused = closed(1000, {
      close: { code: 1006, reason: "" },
      failure: { kind: "unreachable", cause: "connection refused" },
    });
    const fresh = new Attempts(options);
    const first = fresh.afterClose(refused, target);
    expect(first).toMatchObject({ retry: true, status: { error: { code: "unreachable" } } });
    expect(fresh.afterClose(refused, target)).toEqual({
      retry: false,
      code: "unreachable",
      message: "no server at 127.0.0.1:9 (connection refused)",
    });

    const known = new Attempts(options);
    known.accepted();
    for (let i = 0; i < 3; i++)
      expect(known.afterClose(refused, target)).toMatchObject({ retry: true });
  });

  it("waits the time a 4008 asks for, up to 10 % more", () => {
    const attempts = new Attempts(options);
    attempts.afterClose(closed(4008, { reason: "too many failed attempts; retry in 3s" }), target);
    const delay = attempts.takeDelay();
    expect(delay).toBeGreaterThanOrEqual(3000);
    expect(delay).toBeLessThanOrEqual(3300);
  });

  it("gives up with retries_exhausted after maxRetries attempts", () => {
    const attempts = new Attempts(options);
    for (let i = 0; i < 4; i++) {
      attempts.begin();
      expect(attempts.afterClose(closed(1006), target)).toMatchObject({ retry: true });
    }
    attempts.begin();
    expect(attempts.afterClose(closed(1006), target)).toEqual({
      retry: false,
      code: "retries_exhausted",
      message: "gave up after 5 attempts",
    });
  });

  it("gives up on a query that keeps throwing after maxAuthRetries, and forgets failures once it returns", () => {
    const attempts = new Attempts(options);
    attempts.begin();
    expect(attempts.queryFailed("offline")).toMatchObject({ retry: true, status: { attempt: 2 } });
    attempts.begin();
    attempts.querySucceeded();
    attempts.begin();
    expect(attempts.queryFailed("offline")).toMatchObject({ retry: true });
    attempts.begin();
    expect(attempts.queryFailed("offline")).toMatchObject({ retry: true });
    attempts.begin();
    expect(attempts.queryFailed("offline")).toEqual({
      retry: false,
      code: "query_failed",
      message: "query failed: offline",
    });
  });

  it("reset() makes the next attempt a first connection, at once", () => {
    const attempts = new Attempts(options);
    attempts.begin();
    attempts.afterClose(closed(4001), target);
    attempts.reset();
    expect(attempts.takeDelay()).toBe(0);
    expect(attempts.begin()).toBe("connect");
  });
});

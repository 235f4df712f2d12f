import { afterEach, describe, expect, it } from "vitest";
import { Planner, Tuned } from "../fixtures/scheduling-agents.js";
import { startServer, type TestServer, wsUrl } from "../helpers/server.js";
import { connect, type RawClient } from "../helpers/ws-client.js";

let server: TestServer | undefined;
let client: RawClient | undefined;

afterEach(async () => {
  await client?.close();
  await server?.stop();
  server = undefined;
});

async function open(agent: string, name: string): Promise<RawClient> {
  server ??= await startServer({ Planner, Tuned });
  client = await connect(wsUrl(server, `/agents/${agent}/${name}`));
  return client;
}

type Outcome = { result?: string; error?: string; attempts: number[] };

describe("this.retry", () => {
  it("this.retry retries until fn resolves, passing the attempt number, up to maxAttempts", async () => {
    const c = await open("planner", "retry");
    expect(await c.rpc<Outcome>("retrying", [2, { baseDelayMs: 5, maxDelayMs: 10 }])).toEqual({
      result: "ok after 3",
      attempts: [1, 2, 3],
    });
    // The SDK's default is three attempts; the last error is what the caller gets.
    expect(await c.rpc<Outcome>("retrying", [5, { baseDelayMs: 5, maxDelayMs: 10 }])).toEqual({
      error: "attempt 3 failed",
      attempts: [1, 2, 3],
    });
    expect(
      await c.rpc<Outcome>("retrying", [9, { maxAttempts: 5, baseDelayMs: 5, maxDelayMs: 10 }]),
    ).toEqual({ error: "attempt 5 failed", attempts: [1, 2, 3, 4, 5] });
  });

  it("this.retry stops when shouldRetry says no, takes static options.retry as defaults, and refuses bad options", async () => {
    const c = await open("planner", "retry-stop");
    expect(
      await c.rpc<Outcome>("retrying", [9, { maxAttempts: 9, baseDelayMs: 5, stopAt: 3 }]),
    ).toEqual({ error: "attempt 2 failed", attempts: [1, 2] });
    expect((await c.rpc<Outcome>("retrying", [1, { maxAttempts: 0 }])).error).toMatch(
      /maxAttempts must be an integer >= 1/,
    );
    expect(
      (await c.rpc<Outcome>("retrying", [1, { baseDelayMs: 5000, maxDelayMs: 100 }])).error,
    ).toMatch(/baseDelayMs must be <= retry.maxDelayMs/);
    await c.close();
    const tuned = await open("tuned", "retry-tuned");
    expect(await tuned.rpc<Outcome>("retrying", [9])).toEqual({
      error: "attempt 2 failed",
      attempts: [1, 2],
    });
  });
});

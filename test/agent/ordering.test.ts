import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Counter, Sequencer } from "../fixtures/agents.js";
import { startServer, type TestServer, wsUrl } from "../helpers/server.js";
import { connect, isFrame, type RawClient } from "../helpers/ws-client.js";

let server: TestServer;
const clients: RawClient[] = [];

beforeAll(async () => {
  server = await startServer({ Counter, Sequencer });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await server.stop();
});

async function open(path: string): Promise<RawClient> {
  const client = await connect(wsUrl(server, path));
  clients.push(client);
  return client;
}

/** Ids of rpc answers, in the order they arrived. */
function answerOrder(client: RawClient): string[] {
  return client.frames("rpc").map((f) => String(f.id));
}

describe("frame ordering", () => {
  it("answers RPCs in arrival order even when an earlier one is slow", async () => {
    const client = await open("/agents/counter/rpc-order");
    const ids = [
      client.sendCall("slowEcho", ["slow", 50]),
      client.sendCall("increment", [1]),
      client.sendCall("slowEcho", ["medium", 20]),
      client.sendCall("increment", [1]),
      client.sendCall("slowEcho", ["fast", 0]),
    ];
    const answers = await Promise.all(ids.map((id) => client.answer(id)));
    expect(answerOrder(client)).toEqual(ids);
    expect(answers.map((a) => a.result)).toEqual(["slow", 1, "medium", 2, "fast"]);
  });

  it("hands messages to an async onMessage one at a time, in arrival order", async () => {
    const client = await open("/agents/sequencer/messages");
    const sent = ["slow:1", "fast:2", "slow:3", "fast:4", "fast:5"];
    for (const text of sent) client.send(text);
    const handled = await client.waitForCount(
      (m) => typeof m === "string" && m.startsWith("handled:"),
      sent.length,
      "handled messages",
    );
    expect(handled).toEqual(sent.map((t) => `handled:${t}`));
    expect(await client.rpc("order")).toEqual(sent);
  });

  it("holds an RPC until a slow onMessage sent before it has finished", async () => {
    const client = await open("/agents/sequencer/mixed");
    client.send("slow:first");
    const order = await client.rpc<string[]>("order");
    expect(order).toEqual(["slow:first"]);
    expect(client.received.indexOf("handled:slow:first")).toBeLessThan(
      client.received.findIndex((m) => isFrame(m) && m.type === "rpc"),
    );
  });

  it("keeps each connection's order independent: one slow client does not hold another", async () => {
    const slow = await open("/agents/counter/independent");
    const fast = await open("/agents/counter/independent");
    const slowId = slow.sendCall("slowEcho", ["late", 300]);
    const started = Date.now();
    expect(await fast.rpc("increment")).toBe(1);
    expect(Date.now() - started).toBeLessThan(250);
    expect((await slow.answer(slowId)).result).toBe("late");
  });
});

describe("frames the framework does not own", () => {
  it("passes plain text, foreign JSON and binary frames to onMessage", async () => {
    const client = await open("/agents/counter/user-frames");
    client.send("hello");
    client.send('{"type":"chat","text":"hi"}');
    client.send("[1,2,3]");
    client.send('{"no":"type"}');
    client.send(Buffer.from([1, 2, 3]));
    const echoes = await client.waitForCount(
      (m) => typeof m === "string" && m.startsWith("echo:"),
      5,
      "echoes",
    );
    expect(echoes).toEqual([
      "echo:hello",
      'echo:{"type":"chat","text":"hi"}',
      "echo:[1,2,3]",
      'echo:{"no":"type"}',
      "echo:binary:3",
    ]);
    const events = await client.rpc<string[]>("getEvents");
    expect(events.filter((e) => e.startsWith("message:"))).toEqual([
      "message:hello",
      'message:{"type":"chat","text":"hi"}',
      "message:[1,2,3]",
      'message:{"no":"type"}',
      "message:binary:3",
    ]);
  });

  it("does not pass framework frames (rpc, state) to onMessage", async () => {
    const client = await open("/agents/counter/framework-frames");
    await client.rpc("increment");
    client.send({ type: "cf_agent_state", state: { count: 9 } });
    const events = await client.rpc<string[]>("getEvents");
    expect(events.filter((e) => e.startsWith("message:"))).toEqual([]);
  });
});

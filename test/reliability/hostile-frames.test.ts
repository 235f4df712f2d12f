import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../helpers/wait.js";
import { connect, type RawClient } from "../helpers/ws-client.js";
import { Ledger } from "./fixtures.js";
import { encodeFrame, startServer, wsUrl } from "./helpers.js";

/**
 * Property-based fuzzing of everything the server parses from a client. Each property
 * sends hostile frames on one connection while a bystander on the same instance keeps
 * calling `add`: the server must answer (error frame or result) or close with a protocol
 * close code, never crash, never pollute prototypes, and the bystander must keep getting
 * exactly the right answers. Run counts are fixed so the suite stays fast.
 */

const MAX_PAYLOAD = 256 * 1024;
const SEED = Number(process.env.FUZZ_SEED ?? 0x0075_7470);
const RUNS = Number(process.env.FUZZ_RUNS ?? 1);

/** Close codes the server may answer a malformed frame with. */
const PROTOCOL_CLOSES = new Set([1002, 1007, 1008, 1009]);

const DANGEROUS_KEYS = [
  "__proto__",
  "constructor",
  "prototype",
  "polluted",
  "toString",
  "hasOwnProperty",
  "valueOf",
  "__defineGetter__",
  "then",
];

/** Method names that exist on the agent or on Object.prototype but are not callable. */
const FORBIDDEN_METHODS = [
  "__proto__",
  "constructor",
  "prototype",
  "toString",
  "hasOwnProperty",
  "valueOf",
  "isPrototypeOf",
  "__defineGetter__",
  "__lookupGetter__",
  "toLocaleString",
  "secret",
  "onStart",
  "onConnect",
  "onMessage",
  "setState",
  "sql",
  "broadcast",
  "schedule",
  "name",
  "state",
  "env",
];

const key = fc.oneof(fc.constantFrom(...DANGEROUS_KEYS), fc.string({ maxLength: 8 }));

/** JSON *text* (not values), so keys like `__proto__` reach the server verbatim. */
const { json } = fc.letrec<{ json: string }>((tie) => ({
  json: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constantFrom("null", "true", "false", "0", "-0", "1e999", "-1e999", "123456789012345678901"),
    fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => JSON.stringify(n)),
    fc.string({ maxLength: 20, unit: "grapheme" }).map((s) => JSON.stringify(s)),
    fc.array(tie("json"), { maxLength: 4 }).map((items) => `[${items.join(",")}]`),
    fc
      .array(fc.tuple(key, tie("json")), { maxLength: 4 })
      .map((entries) => `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`),
  ),
}));

const methodName = fc.oneof(
  fc
    .constantFrom(...FORBIDDEN_METHODS, "echo", "add", "get", "boom", "integrity")
    .map((m) => JSON.stringify(m)),
  json,
);

const extraFields = fc
  .array(fc.tuple(key, json), { maxLength: 3 })
  .map((entries) => entries.map(([k, v]) => `,${JSON.stringify(k)}:${v}`).join(""));

/** One text frame in any of the shapes the server tells apart, well-formed or not. */
const hostileText = fc.oneof(
  fc
    .record({
      id: fc.oneof(
        fc.string({ minLength: 1, maxLength: 140 }).map((s) => JSON.stringify(s)),
        json,
      ),
      method: methodName,
      args: fc.oneof(
        fc.array(json, { maxLength: 4 }).map((a) => `[${a.join(",")}]`),
        json,
      ),
      extra: extraFields,
    })
    .map(
      ({ id, method, args, extra }) =>
        `{"type":"rpc","id":${id},"method":${method}${extra},"args":${args}}`,
    ),
  fc
    .record({ state: fc.option(json), extra: extraFields })
    .map(
      ({ state, extra }) =>
        `{"type":"cf_agent_state"${extra}${state === null ? "" : `,"state":${state}`}}`,
    ),
  fc
    .record({
      token: fc.oneof(
        fc.string().map((s) => JSON.stringify(s)),
        json,
      ),
      extra: extraFields,
    })
    .map(({ token, extra }) => `{"type":"outpost_auth","token":${token}${extra}}`),
  fc
    .record({ type: json, extra: extraFields })
    .map(({ type, extra }) => `{"type":${type}${extra}}`),
  // Duplicate keys: the last one wins in JSON.parse; the server must not care which.
  fc.constant('{"type":"rpc","type":"cf_agent_state","id":"d","method":"echo","args":[]}'),
  json,
  fc.string({ maxLength: 200 }),
);

describe("hostile frames", () => {
  let server: Awaited<ReturnType<typeof startServer>>;
  let bystander: RawClient;
  let expected = 0;
  const url = () => wsUrl(server, "/agents/ledger/fuzz");
  const prototypeKeys = Object.getOwnPropertyNames(Object.prototype).sort();
  const arrayKeys = Object.getOwnPropertyNames(Array.prototype).sort();

  /** The bystander's counter moves by exactly one per call, whatever else happened. */
  async function checkBystander(): Promise<void> {
    expected++;
    expect(await bystander.rpc("add", ["bystander"])).toBe(expected);
  }

  beforeAll(async () => {
    server = await startServer({ Ledger }, { maxPayload: MAX_PAYLOAD });
    bystander = await connect(url());
  });

  afterAll(async () => {
    await bystander?.close();
    await server?.stop();
  });

  it("refuses every non-callable method name, including Object.prototype members", async () => {
    for (const method of FORBIDDEN_METHODS) {
      const answer = await bystander.call(method, []);
      expect(answer).toMatchObject({ success: false, error: `Method ${method} is not callable` });
    }
    await checkBystander();
  });

  it("answers or closes on any JSON-shaped text frame; the bystander is unaffected", async () => {
    let attacker = await connect(url());
    const outcomes: Record<string, number> = {};
    let sentinel = 0;
    await fc.assert(
      fc.asyncProperty(hostileText, async (text) => {
        if (attacker.ws.readyState !== 1) attacker = await connect(url());
        attacker.ws.send(text);
        const id = `sentinel-${sentinel++}`;
        try {
          const answer = await attacker.request(
            { type: "rpc", id, method: "echo", args: [id] },
            id,
            3_000,
          );
          expect(answer).toMatchObject({ success: true, result: id });
          outcomes.answered = (outcomes.answered ?? 0) + 1;
        } catch (error) {
          const code = (error as { code?: number }).code;
          expect(PROTOCOL_CLOSES.has(code ?? 0), `closed with ${code} after ${text}`).toBe(true);
          outcomes[`close ${code}`] = (outcomes[`close ${code}`] ?? 0) + 1;
        }
        await checkBystander();
      }),
      { numRuns: 1_000 * RUNS, seed: SEED },
    );
    await attacker.close();
    console.log("hostile text frames:", JSON.stringify(outcomes));
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(prototypeKeys);
    expect(Object.getOwnPropertyNames(Array.prototype).sort()).toEqual(arrayKeys);
  });

  it("answers with an error frame, never a crash, for prototype keys in args and state", async () => {
    const attacker = await connect(url());
    const poison =
      '{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}}}';
    const echo = await attacker.request(
      `{"type":"rpc","id":"p1","method":"echo","args":[${poison}]}`,
      "p1",
    );
    expect(echo).toMatchObject({ success: true });
    attacker.ws.send(`{"type":"cf_agent_state","state":${poison}}`);
    attacker.ws.send(`{"type":"rpc","id":"p2","method":"__proto__","args":[${poison}]}`);
    const refused = await attacker.request(
      `{"type":"rpc","id":"p3","method":"constructor","args":[${poison}]}`,
      "p3",
    );
    expect(refused).toMatchObject({ success: false, error: "Method constructor is not callable" });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((Object.create(null) as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(prototypeKeys);
    await attacker.close();
    await checkBystander();
  });

  it("survives deep nesting and huge arrays near and above maxPayload", async () => {
    const attacker = await connect(url());
    const outcomes: string[] = [];
    const shapes = fc.record({
      kind: fc.constantFrom("rpc-deep", "state-deep", "user-deep", "rpc-array", "state-array"),
      size: fc.oneof(
        fc.integer({ min: 1_000, max: MAX_PAYLOAD / 2 - 64 }),
        fc.integer({ min: MAX_PAYLOAD / 2 - 64, max: MAX_PAYLOAD * 2 }),
      ),
    });
    let n = 0;
    let client = attacker;
    await fc.assert(
      fc.asyncProperty(shapes, async ({ kind, size }) => {
        if (client.ws.readyState !== 1) client = await connect(url());
        const id = `big-${n++}`;
        const depth = Math.floor(size / 2);
        const deep = `${"[".repeat(depth)}${"]".repeat(depth)}`;
        const array = `[${"0,".repeat(Math.floor(size / 2))}0]`;
        const text = {
          "rpc-deep": `{"type":"rpc","id":"${id}","method":"echo","args":[${deep}]}`,
          "state-deep": `{"type":"cf_agent_state","state":${deep}}`,
          "user-deep": `{"type":"mine","payload":${deep}}`,
          "rpc-array": `{"type":"rpc","id":"${id}","method":"echo","args":[${array}]}`,
          "state-array": `{"type":"cf_agent_state","state":${array}}`,
        }[kind];
        client.ws.send(text);
        try {
          await client.request(
            { type: "rpc", id: `${id}-s`, method: "echo", args: [1] },
            `${id}-s`,
          );
          outcomes.push(`${kind}:answered`);
        } catch (error) {
          const code = (error as { code?: number }).code;
          expect(code, `${kind} of ${text.length} bytes`).toBe(1009);
          expect(text.length).toBeGreaterThan(MAX_PAYLOAD);
          outcomes.push(`${kind}:1009`);
        }
        await checkBystander();
      }),
      { numRuns: 40 * RUNS, seed: SEED },
    );
    await client.close();
    // A deep value cannot be serialized back: the caller gets an error frame, not a crash.
    const deepClient = await connect(url());
    const deep = `${"[".repeat(100_000)}${"]".repeat(100_000)}`;
    const answer = await deepClient.request(
      `{"type":"rpc","id":"deep","method":"echo","args":[${deep}]}`,
      "deep",
    );
    expect(answer).toMatchObject({ success: false, error: "Result of echo is not serializable" });
    deepClient.ws.send(`{"type":"cf_agent_state","state":${deep}}`);
    await waitFor(
      () => deepClient.frames("cf_agent_state_error").length > 0,
      "state error frame",
      5_000,
    );
    await deepClient.close();
    console.log(
      "deep/huge frames:",
      JSON.stringify(
        outcomes.reduce<Record<string, number>>((acc, o) => {
          acc[o] = (acc[o] ?? 0) + 1;
          return acc;
        }, {}),
      ),
    );
    await checkBystander();
  });

  it("closes on malformed raw WebSocket frames (bad opcodes, bits, masks, UTF-8)", async () => {
    const invalidUtf8 = fc.constantFrom(
      [0xff],
      [0xc0, 0x80],
      [0xed, 0xa0, 0x80],
      [0xf4, 0x90, 0x80, 0x80],
      [0xe2, 0x82],
      [0x7b, 0x22, 0xfe, 0x22, 0x7d],
    );
    const payload = fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
      invalidUtf8.map((b) => Buffer.concat([Buffer.from('{"type":"rpc","id":"'), Buffer.from(b)])),
      hostileText.map((t) => Buffer.from(t)),
    );
    const rawFrame = fc.record({
      opcode: fc.oneof(
        { arbitrary: fc.constantFrom(1, 2), weight: 4 },
        fc.constantFrom(0, 8, 9, 10),
        fc.integer({ min: 0, max: 15 }),
      ),
      // Mostly well-formed headers, so the payload checks behind them are reached too.
      fin: fc.oneof({ arbitrary: fc.constant(true), weight: 6 }, fc.boolean()),
      rsv: fc.oneof({ arbitrary: fc.constant(0), weight: 6 }, fc.integer({ min: 0, max: 7 })),
      masked: fc.oneof({ arbitrary: fc.constant(true), weight: 6 }, fc.boolean()),
      payload,
      oversize: fc.oneof({ arbitrary: fc.constant(false), weight: 8 }, fc.constant(true)),
    });
    const codes: Record<string, number> = {};
    let n = 0;
    await fc.assert(
      fc.asyncProperty(rawFrame, async (frame) => {
        const client = await connect(url());
        const bytes = frame.oversize
          ? encodeFrame({ ...frame, payload: Buffer.alloc(0), length: MAX_PAYLOAD + 1 })
          : encodeFrame(frame);
        client.socket.write(bytes);
        const id = `raw-${n++}`;
        let outcome: string;
        try {
          await client.request({ type: "rpc", id, method: "echo", args: [id] }, id, 3_000);
          outcome = "answered";
        } catch (error) {
          const code = (error as { code?: number }).code ?? 0;
          // A well-formed close frame from the client is echoed with the client's own code.
          if (frame.opcode !== 8 || frame.rsv !== 0 || !frame.masked || !frame.fin) {
            expect(PROTOCOL_CLOSES.has(code), `raw ${JSON.stringify(frame)} → ${code}`).toBe(true);
          }
          outcome = `close ${code}`;
        }
        codes[outcome] = (codes[outcome] ?? 0) + 1;
        client.terminate();
        await checkBystander();
      }),
      { numRuns: 600 * RUNS, seed: SEED },
    );
    console.log("raw frames:", JSON.stringify(codes));
    expect(codes["close 1007"] ?? 0).toBeGreaterThan(0);
    expect(codes["close 1002"] ?? 0).toBeGreaterThan(0);
  });

  it("closes 1007 on invalid UTF-8 split across fragments", async () => {
    const client = await connect(url());
    const socket = client.socket;
    socket.write(encodeFrame({ opcode: 1, fin: false, payload: Buffer.from([0x7b, 0xe2]) }));
    socket.write(encodeFrame({ opcode: 0, fin: true, payload: Buffer.from([0x28, 0x7d]) }));
    expect((await client.closed).code).toBe(1007);
    await checkBystander();
  });

  it("keeps serving and leaks no connection after the fuzzing", async () => {
    await waitFor(() => server.stats().connections === 1, "attackers to be gone", 5_000);
    const fresh = await connect(url());
    expect(await fresh.rpc("get", ["bystander"])).toBe(expected);
    await fresh.close();
  });
});

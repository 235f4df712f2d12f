import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  decodeFrame,
  encodeClose,
  encodeCredit,
  encodeData,
  encodeFail,
  encodeMessage,
  encodeOpen,
  LinkFrameType,
  LinkProtocolError,
} from "../../src/cluster/link-frames.js";

const id = fc.integer({ min: 0, max: 0xffff_ffff });
const target = fc.record({ agent: fc.string(), name: fc.string() });
const json = fc.jsonValue();

describe("link frames", () => {
  it("decode what they encode, for every frame type", () => {
    fc.assert(
      fc.property(id, fc.string(), fc.uint8Array(), (n, text, bytes) => {
        expect(decodeFrame(encodeData(n, text))).toEqual({ type: 2, id: n, data: text });
        const binary = decodeFrame(encodeData(n, Buffer.from(bytes)));
        expect(binary.type).toBe(3);
        expect([...(binary as { data: Buffer }).data]).toEqual([...bytes]);
      }),
    );
    fc.assert(
      fc.property(
        id,
        fc.nat({ max: 0xffff_ffff }),
        target,
        fc.dictionary(fc.string(), json),
        (n, w, t, meta) => {
          const decoded = decodeFrame(encodeOpen(n, w, t, meta));
          expect(decoded).toEqual({
            type: 1,
            id: n,
            window: w,
            target: t,
            meta: JSON.parse(JSON.stringify(meta)),
          });
        },
      ),
    );
    fc.assert(
      fc.property(
        id,
        fc.nat({ max: 0xffff_ffff }),
        fc.integer({ min: 1000, max: 4999 }),
        fc.string(),
        (n, c, code, reason) => {
          expect(decodeFrame(encodeCredit(n, c))).toEqual({ type: 4, id: n, bytes: c });
          expect(decodeFrame(encodeClose(n, code, reason))).toEqual({
            type: 5,
            id: n,
            code,
            reason,
          });
        },
      ),
    );
    fc.assert(
      fc.property(
        id,
        target,
        json,
        fc.option(fc.uint8Array({ minLength: 1 })),
        (n, t, payload, body) => {
          const request = JSON.stringify({ target: t, payload });
          const decoded = decodeFrame(
            encodeMessage(LinkFrameType.Request, n, request, body ?? undefined),
          ) as { type: number; target: unknown; payload: unknown; body?: Buffer };
          expect(decoded.type).toBe(6);
          expect(decoded.target).toEqual(t);
          expect(decoded.payload).toEqual(JSON.parse(JSON.stringify(payload)));
          expect(decoded.body === undefined ? null : [...decoded.body]).toEqual(
            body ? [...body] : null,
          );
        },
      ),
    );
  });

  it("turn any bytes into a frame or a LinkProtocolError, never another exception", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          decodeFrame(Buffer.from(bytes));
        } catch (error) {
          expect(error).toBeInstanceOf(LinkProtocolError);
        }
      }),
      { numRuns: 2_000 },
    );
  });

  it("report only the codes a peer may send in a failure; anything else is ERR_LINK_REQUEST_FAILED", () => {
    expect(decodeFrame(encodeFail(3, "ERR_LINK_NO_HANDLER"))).toEqual({
      type: 8,
      id: 3,
      code: "ERR_LINK_NO_HANDLER",
    });
    const forged = Buffer.concat([Buffer.from([8, 0, 0, 0, 3]), Buffer.from("ERR_LINK_CLOSED")]);
    expect(decodeFrame(forged)).toEqual({ type: 8, id: 3, code: "ERR_LINK_REQUEST_FAILED" });
  });
});

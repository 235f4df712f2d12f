/**
 * Frames of a node link, both directions. Every WebSocket message on a link is one binary
 * frame: a 1-byte type, a 4-byte big-endian stream or request id, then the body of that
 * type. Binary and fixed-width so the hot path (stream data) is one allocation and no JSON;
 * only opens, requests and replies carry a JSON part. No I/O here.
 */
import type { LinkErrorCode } from "./link-errors.js";

export const LinkFrameType = {
  /** Open a stream: u32 receive window the opener grants, then JSON `{ target, meta }`. */
  Open: 1,
  /** Stream data sent as text: UTF-8 bytes. */
  Text: 2,
  /** Stream data sent as binary: the bytes. */
  Binary: 3,
  /** More room on a stream: u32 bytes the receiver consumed since its last credit. */
  Credit: 4,
  /** Stream closed: u16 close code, then the UTF-8 reason. */
  Close: 5,
  /** Request: u32 length of JSON `{ target, payload }`, the JSON, then an optional body. */
  Request: 6,
  /** Reply to a request: u32 length of JSON `{ payload }`, the JSON, then an optional body. */
  Reply: 7,
  /** A request failed on the peer: the error code as UTF-8 (never the peer's message). */
  Fail: 8,
} as const;

/** The agent instance a stream or request is for. */
export interface LinkTarget {
  /** Kebab-case agent class, as in `/agents/<agent>/<name>`. */
  agent: string;
  name: string;
}

export type LinkFrame =
  | { type: 1; id: number; window: number; target: LinkTarget; meta: Record<string, unknown> }
  | { type: 2; id: number; data: string }
  | { type: 3; id: number; data: Buffer }
  | { type: 4; id: number; bytes: number }
  | { type: 5; id: number; code: number; reason: string }
  | { type: 6; id: number; target: LinkTarget; payload: unknown; body?: Buffer }
  | { type: 7; id: number; payload: unknown; body?: Buffer }
  | { type: 8; id: number; code: LinkErrorCode };

/** A frame from the peer that does not parse: the link is closed 1008. */
export class LinkProtocolError extends Error {
  override readonly name = "LinkProtocolError";
}

/** Bytes before the body of every frame. */
export const HEADER_BYTES = 5;
const MAX_ID = 0xffff_ffff;
const FAIL_CODES: ReadonlySet<string> = new Set<LinkErrorCode>([
  "ERR_LINK_REQUEST_FAILED",
  "ERR_LINK_REQUEST_TIMEOUT",
  "ERR_LINK_NO_HANDLER",
  "ERR_LINK_FRAME_TOO_LARGE",
]);

function header(type: number, id: number, bodyBytes: number): Buffer {
  const frame = Buffer.allocUnsafe(HEADER_BYTES + bodyBytes);
  frame.writeUInt8(type, 0);
  frame.writeUInt32BE(id, 1);
  return frame;
}

/** Stream data: text stays text on the other side, bytes stay bytes. */
export function encodeData(id: number, data: string | Buffer): Buffer {
  if (typeof data === "string") {
    const frame = header(LinkFrameType.Text, id, Buffer.byteLength(data));
    frame.write(data, HEADER_BYTES, "utf8");
    return frame;
  }
  const frame = header(LinkFrameType.Binary, id, data.byteLength);
  data.copy(frame, HEADER_BYTES);
  return frame;
}

export function encodeOpen(
  id: number,
  window: number,
  target: LinkTarget,
  meta: Record<string, unknown>,
): Buffer {
  const json = JSON.stringify({ target: { agent: target.agent, name: target.name }, meta });
  const frame = header(LinkFrameType.Open, id, 4 + Buffer.byteLength(json));
  frame.writeUInt32BE(window, HEADER_BYTES);
  frame.write(json, HEADER_BYTES + 4, "utf8");
  return frame;
}

export function encodeCredit(id: number, bytes: number): Buffer {
  const frame = header(LinkFrameType.Credit, id, 4);
  frame.writeUInt32BE(bytes, HEADER_BYTES);
  return frame;
}

export function encodeClose(id: number, code: number, reason: string): Buffer {
  const frame = header(LinkFrameType.Close, id, 2 + Buffer.byteLength(reason));
  frame.writeUInt16BE(code, HEADER_BYTES);
  frame.write(reason, HEADER_BYTES + 2, "utf8");
  return frame;
}

/** A request (`type` Request) or its reply (`type` Reply): JSON part plus optional bytes. */
export function encodeMessage(
  type: typeof LinkFrameType.Request | typeof LinkFrameType.Reply,
  id: number,
  json: string,
  body?: Uint8Array,
): Buffer {
  const jsonBytes = Buffer.byteLength(json);
  const frame = header(type, id, 4 + jsonBytes + (body?.byteLength ?? 0));
  frame.writeUInt32BE(jsonBytes, HEADER_BYTES);
  frame.write(json, HEADER_BYTES + 4, "utf8");
  if (body !== undefined) frame.set(body, HEADER_BYTES + 4 + jsonBytes);
  return frame;
}

export function encodeFail(id: number, code: LinkErrorCode): Buffer {
  const frame = header(LinkFrameType.Fail, id, Buffer.byteLength(code));
  frame.write(code, HEADER_BYTES, "utf8");
  return frame;
}

/** Parse one frame from the peer; throws `LinkProtocolError` for anything malformed. */
export function decodeFrame(frame: Buffer): LinkFrame {
  if (frame.byteLength < HEADER_BYTES) throw new LinkProtocolError("short frame");
  const type = frame.readUInt8(0);
  const id = frame.readUInt32BE(1);
  const body = frame.subarray(HEADER_BYTES);
  switch (type) {
    case LinkFrameType.Open: {
      need(body, 4);
      const parsed = parseJson(body.subarray(4));
      if (!isRecord(parsed) || !isTarget(parsed.target) || !isRecord(parsed.meta)) {
        throw new LinkProtocolError("bad open");
      }
      return { type, id, window: body.readUInt32BE(0), target: parsed.target, meta: parsed.meta };
    }
    case LinkFrameType.Text:
      return { type, id, data: body.toString("utf8") };
    case LinkFrameType.Binary:
      return { type, id, data: body };
    case LinkFrameType.Credit:
      need(body, 4);
      return { type, id, bytes: body.readUInt32BE(0) };
    case LinkFrameType.Close:
      need(body, 2);
      return { type, id, code: body.readUInt16BE(0), reason: body.subarray(2).toString("utf8") };
    case LinkFrameType.Request:
    case LinkFrameType.Reply: {
      need(body, 4);
      const jsonBytes = body.readUInt32BE(0);
      need(body, 4 + jsonBytes);
      const parsed = parseJson(body.subarray(4, 4 + jsonBytes));
      if (!isRecord(parsed) || !("payload" in parsed)) throw new LinkProtocolError("bad message");
      const rest = body.subarray(4 + jsonBytes);
      const extra = rest.byteLength > 0 ? { body: rest } : {};
      if (type === LinkFrameType.Reply) return { type, id, payload: parsed.payload, ...extra };
      if (!isTarget(parsed.target)) throw new LinkProtocolError("bad request");
      return { type, id, target: parsed.target, payload: parsed.payload, ...extra };
    }
    case LinkFrameType.Fail: {
      const code = body.toString("utf8");
      // Only codes a peer may report; anything else is a bug or a forgery, not a reason.
      return {
        type,
        id,
        code: FAIL_CODES.has(code) ? (code as LinkErrorCode) : "ERR_LINK_REQUEST_FAILED",
      };
    }
    default:
      throw new LinkProtocolError("unknown frame type");
  }
}

/** Ids are u32 on the wire; each side counts its own with a parity so they never collide. */
export function nextId(current: number): number {
  const next = current + 2;
  if (next > MAX_ID) throw new RangeError("link ids exhausted");
  return next;
}

function need(body: Buffer, bytes: number): void {
  if (body.byteLength < bytes) throw new LinkProtocolError("truncated frame");
}

function parseJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new LinkProtocolError("bad json");
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isTarget(value: unknown): value is LinkTarget {
  return isRecord(value) && typeof value.agent === "string" && typeof value.name === "string";
}

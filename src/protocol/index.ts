export { CloseCode } from "./close-codes.js";
export * from "./frames.js";
export { formatRetryReason, parseRetryAfterMs, retryAfterSeconds } from "./retry-hint.js";
export { BEARER_PROTOCOL_PREFIX, OUTPOST_PROTOCOL } from "./subprotocols.js";

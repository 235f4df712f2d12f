export { CloseCode } from "./close-codes.js";
export * from "./frames.js";

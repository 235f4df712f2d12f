import type { AgentConnectionError } from "./errors.js";

/** Close code and reason as the client saw them. */
export interface CloseInfo {
  code: number;
  reason: string;
}

/**
 * Where the connection is. One value, not a set of flags:
 * `connecting` (backing off, fetching credentials, or in the handshake) → `open` (the server
 * accepted the credentials and sent its identity and state) → `connecting` again after a
 * recoverable drop, or `closed` for good with a reason.
 */
export type ConnectionStatus =
  | {
      readonly state: "connecting";
      /** Attempt number since the last healthy connection, from 1. */
      readonly attempt: number;
      /** The close that led to this attempt, if any. */
      readonly lastClose?: CloseInfo;
      /** Milliseconds this attempt waits before it starts. */
      readonly delay?: number;
      /** What the last attempt ran into, when the client could tell (e.g. `unreachable`). */
      readonly error?: AgentConnectionError;
    }
  | { readonly state: "open" }
  | {
      readonly state: "closed";
      /** `not_started`: made with `startClosed`; `closed_by_client`: `close()`; `failed`: see `error`. */
      readonly reason: "not_started" | "closed_by_client" | "failed";
      readonly error?: AgentConnectionError;
    };

/** `readyState` of each status, with the numbers of `WebSocket.CONNECTING` etc. */
export const READY_STATE = { connecting: 0, open: 1, closed: 3 } as const;

import type { QueryParams } from "./url.js";

/** Why `query` is being run, so a caching wrapper knows when a cached token will not do. */
export type QueryReason =
  /** First connection (also after `reconnect()`). */
  | "connect"
  /** Reconnecting after the connection dropped. */
  | "reconnect"
  /** The server closed 4001: the credentials it had were refused. */
  | "unauthorized"
  /** The token in use is near its expiry; it will be sent in-band. */
  | "refresh";

/** Passed to a `query` function. Functions that ignore it (like the page's) work as they are. */
export interface QueryContext {
  reason: QueryReason;
}

/** Query parameters, or a sync or async function run before every connection attempt. */
export type QueryOption =
  | QueryParams
  | ((context: QueryContext) => QueryParams | Promise<QueryParams>);

/**
 * The query parameters for one connection attempt or refresh. The connect loop and the
 * in-band refresh both fetch credentials, so they are fetched in one place.
 */
export async function runQuery(
  query: QueryOption | undefined,
  reason: QueryReason,
): Promise<QueryParams> {
  if (query === undefined) return {};
  return typeof query === "function" ? await query({ reason }) : query;
}

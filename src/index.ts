export type {
  AgentClass,
  AgentStaticOptions,
  Schedule,
} from "./agent/agent.js";
export { Agent } from "./agent/agent.js";
export type { CallableMetadata } from "./agent/callable.js";
export { callable } from "./agent/callable.js";
export type { CurrentAgent } from "./agent/context.js";
export { getCurrentAgent } from "./agent/context.js";
export { type AgentByNameStub, getAgentByName } from "./agent/get-agent-by-name.js";
export type { QueueItem, QueueOptions } from "./agent/queue.js";
export { requestAuth } from "./agent/request-auth.js";
export type { RetryCallOptions, RetryOptions } from "./agent/retry.js";
export type { ScheduleCriteria, ScheduleOptions } from "./agent/schedules.js";
export { StreamingResponse } from "./agent/streaming-response.js";
export type { AuthClaims, AuthPolicy, AuthSession } from "./auth/policy.js";
export { AgentCallError, type CallErrorCode } from "./client/errors.js";
export { CloseCode } from "./protocol/close-codes.js";
export { agentNameToKebab } from "./protocol/frames.js";
export {
  type AgentRoute,
  type AgentServer,
  type AgentServerOptions,
  type AgentServerStats,
  createAgentServer,
  type LoggerSetting,
  type RouteFunction,
  type RouteRequest,
  type ServeHandle,
  type ServeOptions,
  serve,
} from "./server/index.js";
export type { SqlValue } from "./storage/agent-database.js";

import type { ConnectionContext as AgentConnectionContext } from "./agent/agent.js";
import type { Connection as AgentConnection } from "./agent/connection.js";
import type { AgentServer } from "./server/agent-server.js";

/** One client's connection to an agent instance (see `Agent.onConnect`). */
export type Connection<State = unknown> = AgentConnection<State>;
/** What `onConnect` gets besides the connection: `request`, the upgrade request. */
export type ConnectionContext = AgentConnectionContext;

/**
 * `Connection` and `ConnectionContext` are types. These values of the same names exist so
 * that Cloudflare's `import { Agent, Connection, ConnectionContext } from "agents"`, with
 * the package name changed, also loads where nothing erases type-only imports: plain
 * JavaScript under `node`, or TypeScript under Node's own type stripping. They do nothing.
 */
export const Connection: Readonly<Record<string, never>> = Object.freeze({});
/** See `Connection`: a do-nothing value so the page's import line loads in plain JavaScript. */
export const ConnectionContext: Readonly<Record<string, never>> = Object.freeze({});

/**
 * Answer plain HTTP to agents fetch-style, for frameworks like Hono. Resolves `null` when
 * the request is not for an agent, so the caller can go on routing.
 *
 * @example
 * app.all("/agents/*", async (c) => (await routeAgentRequest(c.req.raw, outpost)) ?? c.notFound());
 */
export function routeAgentRequest(
  request: Request,
  server: AgentServer,
  remoteAddress?: string,
): Promise<Response | null> {
  return server.routeAgentRequest(request, remoteAddress);
}

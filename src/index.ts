export type {
  AgentClass,
  AgentStaticOptions,
  ConnectionContext,
  Schedule,
} from "./agent/agent.js";
export { Agent } from "./agent/agent.js";
export type { CallableMetadata } from "./agent/callable.js";
export { callable } from "./agent/callable.js";
export type { Connection } from "./agent/connection.js";
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
  type AgentServer,
  type AgentServerOptions,
  type AgentServerStats,
  createAgentServer,
  type LoggerSetting,
  type ServeHandle,
  type ServeOptions,
  serve,
} from "./server/index.js";
export type { SqlValue } from "./storage/agent-database.js";

import type { AgentServer } from "./server/agent-server.js";

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

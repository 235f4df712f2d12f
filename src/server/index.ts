export type { AgentServer, AgentServerOptions, AgentServerStats } from "./agent-server.js";
export { createAgentServer } from "./agent-server.js";
export type { AgentRoute, RouteFunction, RouteRequest } from "./custom-routes.js";
export type { LoggerSetting } from "./logger.js";
export type { ServeHandle, ServeOptions } from "./serve.js";
export { serve } from "./serve.js";

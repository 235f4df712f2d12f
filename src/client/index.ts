export { AgentClient } from "./agent-client.js";
export {
  AgentCallError,
  AgentConnectionError,
  type CallErrorCode,
  type ConnectionErrorCode,
} from "./errors.js";
export type {
  AgentClientEventMap,
  AgentClientEventType,
  AgentClientListener,
  AgentClientListenerOptions,
} from "./events.js";
export type { AgentClientOptions } from "./options.js";
export type { CallOptions, StreamCallbacks } from "./pending-calls.js";
export type { QueryContext, QueryOption, QueryReason } from "./query.js";
export type { ReconnectOptions } from "./reconnect.js";
export type { RefreshOptions } from "./refresh.js";
export type { CloseInfo, ConnectionStatus } from "./status.js";
export type { AgentStub } from "./stub.js";
export type { WebSocketConstructor } from "./transport.js";
export { type AgentAddress, agentUrl, type QueryParams } from "./url.js";

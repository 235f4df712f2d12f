export {
  AgentClient,
  type AgentClientOptions,
  type AgentStub,
  type CallOptions,
  type CloseInfo,
  type ConnectionStatus,
  type QueryContext,
  type QueryOption,
  type QueryReason,
  type RefreshOptions,
  type StreamCallbacks,
  type WebSocketConstructor,
} from "./agent-client.js";
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
export type { ReconnectOptions } from "./reconnect.js";
export { type AgentAddress, agentUrl, type QueryParams } from "./url.js";

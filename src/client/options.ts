import type { AgentConnectionError } from "./errors.js";
import type { QueryOption } from "./query.js";
import type { ReconnectOptions } from "./reconnect.js";
import type { RefreshOptions } from "./refresh.js";
import type { CloseInfo, ConnectionStatus } from "./status.js";
import type { WebSocketConstructor } from "./transport.js";
import type { AgentAddress } from "./url.js";

/** Options of `AgentClient`. */
export interface AgentClientOptions<State = unknown> extends AgentAddress {
  /** Query parameters (e.g. `{ token }`), or a function run before every connection attempt. */
  query?: QueryOption;
  /** WebSocket class to use; required where there is no global `WebSocket` (Node 20). */
  WebSocket?: WebSocketConstructor;
  /** The agent's state changed: from the server, or by this client's `setState`. */
  onStateUpdate?: (state: State, source: "server" | "client") => void;
  /** The server refused a `setState` from this client. */
  onStateUpdateError?: (error: string) => void;
  /** The server named the instance this connection reached. */
  onIdentity?: (name: string, agent: string) => void;
  /**
   * A reconnect reached another instance than the last connection did (a server that routes
   * by session, with `basePath`). Without it, the change is logged with `console.warn`.
   */
  onIdentityChange?: (oldName: string, newName: string, oldAgent: string, newAgent: string) => void;
  /**
   * The server's MCP server list (`cf_agent_mcp_servers`), as the official client reports it.
   * An Outpost server sends an empty one on every connect.
   */
  onMcpUpdate?: (mcp: unknown) => void;
  /**
   * The server accepted the connection (identity and state received). Not called on a raw
   * socket open: an Outpost server accepts the upgrade even when it refuses the credentials.
   */
  onOpen?: () => void;
  /** The socket closed, for whatever reason; the client may reconnect afterwards. */
  onClose?: (event: CloseInfo) => void;
  /** A message the framework does not own (the agent's own `connection.send`). */
  onMessage?: (event: MessageEvent) => void;
  /** The connection ended for good; `connectionError` holds the same error. */
  onConnectionError?: (error: AgentConnectionError) => void;
  /** Every change of `status`. */
  onStatusChange?: (status: ConnectionStatus) => void;
  /** Backoff and retry limits. */
  reconnect?: ReconnectOptions;
  /** Milliseconds for the socket to open and the server to send its identity. Default 10000. */
  connectionTimeout?: number;
  /** Timeout of plain calls that do not pass one. Default 30000; 0 disables. */
  defaultCallTimeout?: number;
  /** In-band token refresh (`false` turns it off). */
  refresh?: RefreshOptions | false;
  /** Messages kept while disconnected; beyond this `send`/`call` fail with `queue_full`. Default 1000. */
  maxQueuedMessages?: number;
  /** Do not connect until `reconnect()` is called. */
  startClosed?: boolean;
}

/**
 * Defaults of the options above that `AgentClient` applies itself (`reconnect` and
 * `refresh` have theirs in `reconnect.ts` and `refresh.ts`).
 */
export const CLIENT_DEFAULTS = {
  connectionTimeout: 10_000,
  defaultCallTimeout: 30_000,
  maxQueuedMessages: 1000,
} as const;

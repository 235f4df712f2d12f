/**
 * Frames on the wire. The `cf_agent_*` and `rpc` frames are the Cloudflare Agents protocol,
 * kept as-is so the official `agents` client can talk to Outpost; Outpost's own frames are
 * prefixed `outpost_`. No I/O here: shared by server and client.
 */

export const FrameType = {
  Identity: "cf_agent_identity",
  State: "cf_agent_state",
  StateError: "cf_agent_state_error",
  Rpc: "rpc",
  Auth: "outpost_auth",
  AuthResult: "outpost_auth_result",
  McpServers: "cf_agent_mcp_servers",
  Refused: "outpost_refused",
} as const;

/** Server → client: sent first on every accepted connection. */
export interface IdentityFrame {
  type: typeof FrameType.Identity;
  agent: string;
  name: string;
  /** A `cf_agent_state` frame follows; clients wait for it before they are ready. */
  stateFollows?: boolean;
}

/** Both ways: the whole agent state. */
export interface StateFrame {
  type: typeof FrameType.State;
  state: unknown;
}

/** Server → client: a state write from this connection was refused. */
export interface StateErrorFrame {
  type: typeof FrameType.StateError;
  error: string;
}

/** Client → server. */
export interface RpcRequestFrame {
  type: typeof FrameType.Rpc;
  id: string;
  method: string;
  args: unknown[];
}

/** Server → client. Streaming calls send `done: false` chunks, then one `done: true`. */
export type RpcResponseFrame =
  | { type: typeof FrameType.Rpc; id: string; success: true; result: unknown; done: boolean }
  | { type: typeof FrameType.Rpc; id: string; success: false; error: string };

/** Client → server: in-band credential refresh. */
export interface AuthFrame {
  type: typeof FrameType.Auth;
  token: string;
}

/** Server → client: answer to an `outpost_auth` frame. */
export type AuthResultFrame =
  | { type: typeof FrameType.AuthResult; ok: true; exp?: number }
  | { type: typeof FrameType.AuthResult; ok: false; code: string; error: string };

/**
 * Server → client: a frame of this connection was refused (e.g. a user message without the
 * `message` scope). Frames with their own answer (RPC, state) are refused in that answer.
 */
export interface RefusedFrame {
  type: typeof FrameType.Refused;
  action: "message";
  error: string;
}

export type ClientFrame = StateFrame | RpcRequestFrame | AuthFrame;
/**
 * Server → client: the agent's MCP servers. Outpost has none and sends the empty list once
 * per connect, so the official client's `onMcpUpdate` fires as it does on Cloudflare.
 */
export interface McpServersFrame {
  type: typeof FrameType.McpServers;
  mcp: { servers: Record<string, never>; tools: never[]; prompts: never[]; resources: never[] };
}

/** The `cf_agent_mcp_servers` frame Outpost sends on connect. */
export const EMPTY_MCP_SERVERS: McpServersFrame = Object.freeze({
  type: FrameType.McpServers,
  mcp: Object.freeze({ servers: {}, tools: [], prompts: [], resources: [] }),
});

export type ServerFrame =
  | IdentityFrame
  | McpServersFrame
  | StateFrame
  | StateErrorFrame
  | RpcResponseFrame
  | AuthResultFrame
  | RefusedFrame;

/** Result of classifying a text frame from a client. */
export type ParsedClientFrame =
  | { kind: "state"; frame: StateFrame }
  | { kind: "rpc"; frame: RpcRequestFrame }
  | { kind: "auth"; frame: AuthFrame }
  /** Valid JSON or plain text the framework does not own: goes to `onMessage`. */
  | { kind: "user" }
  /** Claims to be a framework frame but is malformed; `id` is set when an RPC can be answered. */
  | { kind: "invalid"; error: string; id?: string };

const MAX_RPC_ID_LENGTH = 128;
const MAX_METHOD_LENGTH = 128;

/**
 * Classify one text frame. Never throws. Frames whose `type` is not the framework's are
 * left for the user's `onMessage` untouched.
 */
export function parseClientFrame(text: string): ParsedClientFrame {
  // Cheap pre-check: framework frames are JSON objects.
  if (text.length === 0 || text.charCodeAt(0) !== 123 /* { */) return { kind: "user" };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { kind: "user" };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return { kind: "user" };
  const frame = value as Record<string, unknown>;
  switch (frame.type) {
    case FrameType.Rpc: {
      const { id, method, args } = frame;
      if (typeof id !== "string" || id.length === 0 || id.length > MAX_RPC_ID_LENGTH) {
        return { kind: "invalid", error: "rpc frame needs a string id" };
      }
      if (typeof method !== "string" || method.length === 0 || method.length > MAX_METHOD_LENGTH) {
        return { kind: "invalid", error: "rpc frame needs a method name", id };
      }
      if (args !== undefined && !Array.isArray(args)) {
        return { kind: "invalid", error: "rpc args must be an array", id };
      }
      return { kind: "rpc", frame: { type: FrameType.Rpc, id, method, args: args ?? [] } };
    }
    case FrameType.State:
      if (!("state" in frame)) return { kind: "invalid", error: "state frame needs a state" };
      return { kind: "state", frame: { type: FrameType.State, state: frame.state } };
    case FrameType.Auth:
      if (typeof frame.token !== "string" || frame.token.length === 0) {
        return { kind: "invalid", error: "outpost_auth frame needs a token" };
      }
      return { kind: "auth", frame: { type: FrameType.Auth, token: frame.token } };
    default:
      return { kind: "user" };
  }
}

/**
 * `MyAgent` → `my-agent`, the way Cloudflare names agents in URLs (`/agents/my-agent/:name`).
 * An all-caps name is lower-cased (`LLM` → `llm`); underscores become dashes.
 */
export function agentNameToKebab(className: string): string {
  if (className === className.toUpperCase() && className !== className.toLowerCase()) {
    return className.toLowerCase().replace(/_/g, "-");
  }
  const kebab = className.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
  return (kebab.startsWith("-") ? kebab.slice(1) : kebab).replace(/_/g, "-").replace(/-$/, "");
}

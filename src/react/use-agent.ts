import { use, useEffect, useMemo, useRef, useSyncExternalStore } from "react";
import {
  AgentClient,
  type AgentClientOptions,
  type AgentConnectionError,
  type AgentStub,
  type ConnectionStatus,
  type QueryContext,
  type QueryParams,
} from "../client/index.js";
import { agentNameToKebab } from "../protocol/frames.js";
import { cachedQuery, queryForConnection, refetchQuery } from "./query-cache.js";

/** Options of `useAgent`: those of `AgentClient` plus `queryDeps` and `cacheTtl`. */
export interface UseAgentOptions<State = unknown>
  extends Omit<AgentClientOptions<State>, "startClosed"> {
  /**
   * When an async `query` runs again: a change reconnects with a fresh result. The result
   * is cached per agent, instance and `queryDeps`. Default `[]`.
   */
  queryDeps?: unknown[];
  /** Milliseconds a resolved `query` result is reused by components that mount. Default 5 min. */
  cacheTtl?: number;
  /** `false` keeps the socket closed (and closes an open one) until it is true. Default `true`. */
  enabled?: boolean;
}

/** What `useAgent` returns. Re-rendered when state, status or identity change. */
export interface UseAgentResult<State = unknown> {
  /** Last known agent state; `undefined` until the server sends it. */
  state: State | undefined;
  /** Replace the agent's state (applied locally at once, then sent). */
  setState: (state: State) => void;
  /** Call a `@callable()` method; see `AgentClient.call`. */
  call: AgentClient<State>["call"];
  /** `stub.method(...args)` calls `method` on the agent. */
  stub: AgentStub;
  /** Resolves once the current connection is accepted (read it where you await it). */
  readonly ready: Promise<void>;
  /** 0 connecting, 1 open, 3 closed. */
  readyState: number;
  /** Where the connection is; see `ConnectionStatus`. */
  status: ConnectionStatus;
  /** Why the connection ended for good, or `null`. */
  connectionError: AgentConnectionError | null;
  /** Kebab-case agent name, as the server reported it. */
  agent: string;
  /** Instance name, as the server reported it. */
  name: string;
  /** True once the server named the instance and sent its state; false after a drop. */
  identified: boolean;
  /** The address as the official hook gives it: `[{ agent, name }]`, root first. */
  path: ReadonlyArray<{ agent: string; name: string }>;
  /** The agent's HTTP URL with the current query (it carries the token); see `AgentClient.getHttpUrl`. */
  getHttpUrl: () => string;
  /** Send a raw message to the agent's `onMessage`. */
  send: AgentClient<State>["send"];
  /** Drop the connection and open a new one with fresh credentials. */
  reconnect: () => void;
  /** Listen to `open`, `message`, `close` and `error`; see `AgentClient.addEventListener`. */
  addEventListener: AgentClient<State>["addEventListener"];
  /** Remove a listener added with `addEventListener`. */
  removeEventListener: AgentClient<State>["removeEventListener"];
  /** The underlying client. */
  client: AgentClient<State>;
}

const DEFAULT_CACHE_TTL = 5 * 60 * 1000;

interface Connection<State> {
  client: AgentClient<State>;
  subscribe: (listener: () => void) => () => void;
  version: () => number;
}

/**
 * Connect a component to an agent. Same options as the Cloudflare Agents `useAgent`, so
 * code written for it runs after changing the import. An async `query` suspends the
 * component until it resolves (wrap it in `<Suspense>`); its result is cached and shared,
 * and fetched again whenever the server asks for fresh credentials (4001) or the token
 * nears its expiry — no refresh code needed in the app.
 *
 * @example
 * const asyncQuery = useCallback(async () => ({ token: await getAuthToken() }), []);
 * const agent = useAgent<{ count: number }>({ agent: "counter", name: "room-1", query: asyncQuery });
 * return <button onClick={() => agent.stub.increment()}>{agent.state?.count ?? "…"}</button>;
 */
export function useAgent<State = unknown>(options: UseAgentOptions<State>): UseAgentResult<State> {
  const latest = useRef(options);
  latest.current = options;

  const agent = agentNameToKebab(options.agent);
  const name = options.name ?? "default";
  const { query } = options;
  const ttl = options.cacheTtl ?? DEFAULT_CACHE_TTL;
  const asyncQuery = typeof query === "function";
  // Inline `query: { token }` objects are new on every render; compare them by value.
  const cacheKey = JSON.stringify([
    agent,
    name,
    options.host ?? null,
    asyncQuery ? (options.queryDeps ?? []) : (query ?? null),
  ]);
  const connectionKey = JSON.stringify([
    cacheKey,
    options.protocol ?? null,
    options.basePath ?? null,
    options.path ?? null,
  ]);
  const enabled = options.enabled !== false;

  // Held per mounted component, so a result replaced in the shared cache later (a refresh)
  // does not make this component suspend again.
  // The query function is not a dependency: `queryDeps` (in `cacheKey`) says when it changes.
  // biome-ignore lint/correctness/useExhaustiveDependencies: keyed on `cacheKey` on purpose
  const pending = useMemo(
    () =>
      typeof query === "function"
        ? cachedQuery(cacheKey, ttl, () => query({ reason: "connect" }))
        : undefined,
    [cacheKey],
  );
  if (pending !== undefined) use(pending);

  // `connectionKey` holds every option that changes the address or the credentials; the
  // callbacks are read through `latest`, so new closures do not reconnect.
  // biome-ignore lint/correctness/useExhaustiveDependencies: keyed on `connectionKey` on purpose
  const connection = useMemo(
    () => createConnection<State>(latest, agent, name, cacheKey),
    [connectionKey],
  );
  const { client } = connection;

  useEffect(() => {
    if (!enabled) return;
    client.reconnect();
    return () => client.close();
  }, [client, enabled]);

  const version = useSyncExternalStore(
    connection.subscribe,
    connection.version,
    connection.version,
  );

  // biome-ignore lint/correctness/useExhaustiveDependencies: `version` changes whenever the client does
  return useMemo<UseAgentResult<State>>(
    () => ({
      state: client.state,
      setState: client.setState,
      call: client.call,
      stub: client.stub,
      get ready() {
        return client.ready;
      },
      readyState: client.readyState,
      status: client.status,
      connectionError: client.connectionError,
      agent: client.agent,
      name: client.name,
      identified: client.identified,
      path: [{ agent: client.agent, name: client.name }],
      getHttpUrl: client.getHttpUrl,
      send: client.send,
      reconnect: client.reconnect,
      addEventListener: client.addEventListener,
      removeEventListener: client.removeEventListener,
      client,
    }),
    [client, version],
  );
}

/**
 * A client that starts closed (the effect opens it, so a render React throws away leaves
 * no socket behind) and a tiny store that tells React when to re-render.
 */
function createConnection<State>(
  latest: { readonly current: UseAgentOptions<State> },
  agent: string,
  name: string,
  cacheKey: string,
): Connection<State> {
  const listeners = new Set<() => void>();
  let version = 0;
  const changed = () => {
    version++;
    for (const listener of listeners) listener();
  };
  const options = latest.current;
  const ttl = options.cacheTtl ?? DEFAULT_CACHE_TTL;

  const query = (context: QueryContext): QueryParams | Promise<QueryParams> => {
    const current = latest.current.query;
    if (typeof current !== "function") return current ?? {};
    const run = () => current(context);
    // A 4001 or a token near expiry: the cached result is what was refused or is running out.
    if (context.reason === "unauthorized" || context.reason === "refresh") {
      return refetchQuery(cacheKey, run);
    }
    return queryForConnection(cacheKey, ttl, run);
  };

  const client = new AgentClient<State>({
    ...options,
    agent,
    name,
    query,
    startClosed: true,
    onStateUpdate: (state, source) => {
      changed();
      latest.current.onStateUpdate?.(state, source);
    },
    onStateUpdateError: (error) => latest.current.onStateUpdateError?.(error),
    onIdentity: (identityName, identityAgent) => {
      changed();
      latest.current.onIdentity?.(identityName, identityAgent);
    },
    onMcpUpdate: (mcp) => latest.current.onMcpUpdate?.(mcp),
    // Only when the app passes one: without it the client warns about the change itself.
    ...(options.onIdentityChange !== undefined && {
      onIdentityChange: (...change: [string, string, string, string]) =>
        latest.current.onIdentityChange?.(...change),
    }),
    onOpen: () => latest.current.onOpen?.(),
    onClose: (event) => latest.current.onClose?.(event),
    onMessage: (event) => latest.current.onMessage?.(event),
    onConnectionError: (error) => {
      changed();
      latest.current.onConnectionError?.(error);
    },
    onStatusChange: (status) => {
      changed();
      latest.current.onStatusChange?.(status);
    },
  });
  return {
    client,
    subscribe: (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    version: () => version,
  };
}

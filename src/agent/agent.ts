import type { SqlValue } from "../storage/agent-database.js";
import type { Connection } from "./connection.js";
import { AGENT_BRAND, processWide } from "./shared.js";

/** What `onConnect` receives besides the connection. */
export interface ConnectionContext {
  /** The upgrade request: `url` carries the query string, `headers` the upgrade headers. */
  request: Request;
}

/** A scheduled call, as returned by `schedule()` and `getSchedules()`. */
export interface Schedule<Payload = unknown> {
  id: string;
  /** Name of the agent method that runs. */
  callback: string;
  payload: Payload;
  /** When it runs, in seconds since the epoch. */
  time: number;
  /** `delayed` when scheduled with a number of seconds, `scheduled` with a `Date`. */
  type: "scheduled" | "delayed";
}

/**
 * What an agent needs from the runtime hosting it. Implemented by the instance registry;
 * user code never sees it.
 * @internal
 */
export interface AgentRuntime {
  readonly name: string;
  readonly agentName: string;
  readState(): unknown;
  writeState(state: unknown): void;
  sql<Row>(strings: TemplateStringsArray, values: readonly SqlValue[]): Row[];
  schedule(when: Date | number, callback: string, payload: unknown): Schedule;
  getSchedules(): Schedule[];
  getSchedule(id: string): Schedule | undefined;
  cancelSchedule(id: string): boolean;
  broadcast(message: string | ArrayBuffer | ArrayBufferView, without?: readonly string[]): void;
  connections(tag?: string): Iterable<Connection>;
  connection(id: string): Connection | undefined;
  reportError(connection: Connection | undefined, error: unknown): void;
  /** Count `work` as activity: the instance is not evicted until it settles. */
  track<T>(work: () => Promise<T>): Promise<T>;
}

/**
 * The connection type hooks receive. Overrides may narrow it to `Connection<MyState>`,
 * so hooks can read a typed `connection.state` without casts.
 */
// biome-ignore lint/suspicious/noExplicitAny: lets overrides annotate their own connection state.
export type HookConnection = Connection<any>;

const runtimes = processWide(
  "runtimes",
  () => new WeakMap<Agent<unknown, unknown>, AgentRuntime>(),
);

/** @internal Construction context handed to every agent by the runtime. */
export interface AgentContext {
  runtime: AgentRuntime;
}

/** @internal */
export function runtimeOf(agent: Agent<unknown, unknown>): AgentRuntime {
  const runtime = runtimes.get(agent);
  if (runtime === undefined) throw new Error("this agent is not hosted by an Outpost server");
  return runtime;
}

/**
 * A stateful agent: one live instance per (class, name), reached at
 * `/agents/<kebab-class-name>/<name>`. Extend it, set `initialState`, and override the
 * hooks you need. Hooks run in this order for a connection: `onStart` (once per instance,
 * before anything else reaches it) → `onConnect` → `onMessage`/RPC/state writes, one frame
 * at a time → `onClose`.
 *
 * @example
 * export class Counter extends Agent<Env, { count: number }> {
 *   initialState = { count: 0 };
 *
 *   @callable()
 *   increment() {
 *     this.setState({ count: this.state.count + 1 });
 *     return this.state.count;
 *   }
 * }
 */
export class Agent<Env = unknown, State = unknown> {
  /** Marks Agent classes (and subclasses) from any copy of Outpost. */
  static readonly [AGENT_BRAND] = true;
  /** State used until the first `setState`. */
  initialState?: State;
  /** The `env` given to `serve()`. */
  readonly env: Env;

  constructor(ctx: AgentContext, env: Env) {
    runtimes.set(this as Agent<unknown, unknown>, ctx.runtime);
    this.env = env;
  }

  /** The instance name (the last URL segment). */
  get name(): string {
    return runtimeOf(this as Agent<unknown, unknown>).name;
  }

  /** The current state: the last `setState`, else `initialState`. */
  get state(): State {
    const stored = runtimeOf(this as Agent<unknown, unknown>).readState();
    return (stored === undefined ? this.initialState : stored) as State;
  }

  /**
   * Replace the state. It is on disk when this returns (it survives the process being
   * killed), then broadcast to every connection and passed to `onStateUpdate`.
   */
  setState(state: State): void {
    runtimeOf(this as Agent<unknown, unknown>).writeState(state);
  }

  /**
   * Query this instance's own SQLite database. Interpolated values are bound as
   * parameters, never spliced into the SQL.
   *
   * @example
   * this.sql`CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, text TEXT)`;
   * this.sql`INSERT INTO messages (text) VALUES (${text})`;
   * const rows = this.sql<{ text: string }>`SELECT text FROM messages ORDER BY id`;
   */
  sql<Row = Record<string, unknown>>(strings: TemplateStringsArray, ...values: SqlValue[]): Row[] {
    return runtimeOf(this as Agent<unknown, unknown>).sql<Row>(strings, values);
  }

  /**
   * Call `this[callback](payload, schedule)` at a `Date`, or after a number of seconds.
   * Schedules are stored in the instance's database: they survive restarts and wake an
   * evicted instance when due.
   */
  async schedule<Payload = unknown>(
    when: Date | number,
    callback: keyof this & string,
    payload?: Payload,
  ): Promise<Schedule<Payload>> {
    return runtimeOf(this as Agent<unknown, unknown>).schedule(
      when,
      callback,
      payload,
    ) as Schedule<Payload>;
  }

  /** Every pending schedule, earliest first. */
  getSchedules(): Schedule[] {
    return runtimeOf(this as Agent<unknown, unknown>).getSchedules();
  }

  /** One pending schedule by id. */
  getSchedule(id: string): Schedule | undefined {
    return runtimeOf(this as Agent<unknown, unknown>).getSchedule(id);
  }

  /** Cancel a schedule; resolves to false when there was none with that id. */
  async cancelSchedule(id: string): Promise<boolean> {
    return runtimeOf(this as Agent<unknown, unknown>).cancelSchedule(id);
  }

  /** Send a message to every open connection except those whose ids are in `without`. */
  broadcast(message: string | ArrayBuffer | ArrayBufferView, without?: readonly string[]): void {
    runtimeOf(this as Agent<unknown, unknown>).broadcast(message, without);
  }

  /**
   * Every open connection to this instance, or only those carrying `tag` (see
   * `getConnectionTags`; every connection carries its own id as a tag).
   */
  getConnections<ConnectionState = unknown>(tag?: string): Iterable<Connection<ConnectionState>> {
    return runtimeOf(this as Agent<unknown, unknown>).connections(tag) as Iterable<
      Connection<ConnectionState>
    >;
  }

  /** One open connection by id. */
  getConnection<ConnectionState = unknown>(id: string): Connection<ConnectionState> | undefined {
    return runtimeOf(this as Agent<unknown, unknown>).connection(id) as
      | Connection<ConnectionState>
      | undefined;
  }

  /**
   * Run `work` with the instance kept alive: it is not evicted (its database closed) while
   * `work` runs, even with no connection left, and shutdown waits for it.
   *
   * @example
   * await this.keepAliveWhile(async () => { for await (const part of stream) save(part); });
   */
  keepAliveWhile<T>(work: () => Promise<T>): Promise<T> {
    return runtimeOf(this as Agent<unknown, unknown>).track(work);
  }

  /**
   * Tags for a connection that is being set up, before `onConnect`: `getConnections(tag)`
   * finds it by them, and `connection.tags` lists them after its id. At most 9 tags of at
   * most 256 characters each, as on Cloudflare; a refused list closes the connection 1011.
   *
   * @example
   * getConnectionTags(connection: Connection) {
   *   return [connection.auth?.role === "admin" ? "admins" : "members"];
   * }
   */
  getConnectionTags(
    _connection: HookConnection,
    _ctx: ConnectionContext,
  ): string[] | Promise<string[]> {
    return [];
  }

  /** Runs once per instance, before any connection, call or schedule reaches it. */
  onStart(): void | Promise<void> {}

  /**
   * A client connected (and, with `auth`, was verified). Runs before the identity and
   * state frames go out, so closing here sends the client nothing else.
   */
  onConnect(_connection: HookConnection, _ctx: ConnectionContext): void | Promise<void> {}

  /** A frame the framework does not own (not RPC, state or `outpost_` frames). */
  onMessage(_connection: HookConnection, _message: string | Buffer): void | Promise<void> {}

  /** A connection closed. */
  onClose(
    _connection: HookConnection,
    _code: number,
    _reason: string,
    _wasClean: boolean,
  ): void | Promise<void> {}

  /**
   * An error thrown by one of this agent's hooks, callables or schedules. Called as the SDK
   * calls it: `onError(connection, error)` for an error on a connection, `onError(error)`
   * for any other; an override that declares a single parameter always gets the error.
   * The client only ever sees the message, never a stack.
   */
  onError(_connectionOrError: HookConnection | unknown, _error?: unknown): void | Promise<void> {}

  /**
   * The state changed (it is on disk and sent to the connections); `source` is the
   * connection that wrote it, or `"server"`. Errors here go to `onError` and undo nothing.
   */
  onStateChanged(_state: State, _source: HookConnection | "server"): void | Promise<void> {}

  /**
   * @deprecated Renamed `onStateChanged`, as in the Cloudflare Agents SDK; the behaviour is
   * the same. Called only when `onStateChanged` is not overridden.
   */
  onStateUpdate(_state: State, _source: HookConnection | "server"): void | Promise<void> {}

  /** Throw to refuse a state change; the writer gets `cf_agent_state_error`. */
  validateStateChange(_nextState: State, _source: HookConnection | "server"): void {}

  /** Return true to make a connection read-only (its state writes are refused). */
  shouldConnectionBeReadonly(_connection: HookConnection, _ctx: ConnectionContext): boolean {
    return false;
  }

  /** Plain HTTP to the agent's URL. */
  onRequest(_request: Request): Response | Promise<Response> {
    return new Response("Not found", { status: 404 });
  }
}

/** Is `value` a class that extends `Agent` (from any copy of Outpost)? */
export function isAgentClass(value: unknown): value is AgentClass {
  return (
    typeof value === "function" &&
    value !== Agent &&
    (value as unknown as Record<symbol, unknown>)[AGENT_BRAND] === true
  );
}

/** Any class that extends `Agent`. */
// biome-ignore lint/suspicious/noExplicitAny: constructors of user agents take any Env/State.
export type AgentClass = new (ctx: AgentContext, env: any) => Agent<any, any>;

/**
 * The state hook an agent overrides: `onStateChanged`, else the deprecated `onStateUpdate`,
 * else none (`undefined`, so an agent with neither pays nothing per state change).
 * @internal
 */
export function stateChangeHook(
  agent: Agent<unknown, unknown>,
): ((state: unknown, source: HookConnection | "server") => void | Promise<void>) | undefined {
  if (agent.onStateChanged !== Agent.prototype.onStateChanged) return agent.onStateChanged;
  if (agent.onStateUpdate !== Agent.prototype.onStateUpdate) return agent.onStateUpdate;
  return undefined;
}

/**
 * Call `onError` the way the SDK does: `(connection, error)` on a connection, `(error)`
 * otherwise, and `(error)` always for an override written `onError(error)`.
 * @internal
 */
export function callOnError(
  agent: Agent<unknown, unknown>,
  connection: Connection | undefined,
  error: unknown,
): void | Promise<void> {
  if (connection === undefined || agent.onError.length === 1) return agent.onError(error);
  return agent.onError(connection, error);
}

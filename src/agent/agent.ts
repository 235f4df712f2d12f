import type { SqlValue } from "../storage/agent-database.js";
import type { Connection } from "./connection.js";
import type { QueueItem, QueueOptions, TaskQueue } from "./queue.js";
import { type RetryCallOptions, type RetryOptions, resolveRetry, withRetries } from "./retry.js";
import type { Schedule, ScheduleCriteria, ScheduleOptions, Schedules } from "./schedules.js";
import { AGENT_BRAND, processWide } from "./shared.js";

export type { Schedule } from "./schedules.js";

/** What `onConnect` receives besides the connection. */
export interface ConnectionContext {
  /** The upgrade request: `url` carries the query string, `headers` the upgrade headers. */
  request: Request;
}

/** Class-wide settings, as the SDK's `static options` on an agent class. */
export interface AgentStaticOptions {
  /** Defaults for every retry policy of `schedule()`, `queue()` and `this.retry()`. */
  retry?: RetryOptions;
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
  readonly schedules: Schedules;
  readonly queue: TaskQueue;
  readonly retryDefaults: Required<RetryOptions>;
  keepAlive(): () => void;
  destroy(): Promise<void>;
  broadcast(message: string | ArrayBuffer | ArrayBufferView, without?: readonly string[]): void;
  connections(tag?: string): Iterable<Connection>;
  connection(id: string): Connection | undefined;
  reportError(connection: Connection | undefined, error: unknown): void;
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
  /** Class-wide settings; a subclass sets `static options = { retry: { maxAttempts: 5 } }`. */
  static options?: AgentStaticOptions;
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
   * Call `this[callback](payload, schedule)` at a `Date`, after a number of seconds, or on
   * every match of a cron expression (five fields, or six with seconds first; UTC unless
   * `options.timezone`). Stored in the instance's database: schedules survive restarts and
   * wake an evicted instance. A recurring schedule never runs twice for one due time; a
   * callback that throws is retried as `options.retry` says, then logged and passed to
   * `onError`.
   *
   * @example
   * await this.schedule("0 8 * * *", "dailyDigest", { userId }); // every day at 08:00 UTC
   */
  async schedule<Payload = unknown>(
    when: Date | string | number,
    callback: keyof this & string,
    payload?: Payload,
    options?: ScheduleOptions,
  ): Promise<Schedule<Payload>> {
    return runtimeOf(this as Agent<unknown, unknown>).schedules.create(
      when,
      callback,
      payload,
      options,
    ) as Schedule<Payload>;
  }

  /**
   * Call `this[callback](payload, schedule)` every `intervalSeconds`, the first time one
   * interval from now. Idempotent by default: the same callback, interval and payload
   * return the existing schedule, so it is safe in `onStart`. A run still going when the
   * next is due makes that one skip.
   */
  async scheduleEvery<Payload = unknown>(
    intervalSeconds: number,
    callback: keyof this & string,
    payload?: Payload,
    options?: ScheduleOptions & { _idempotent?: boolean },
  ): Promise<Schedule<Payload>> {
    return runtimeOf(this as Agent<unknown, unknown>).schedules.every(
      intervalSeconds,
      callback,
      payload,
      options,
    ) as Schedule<Payload>;
  }

  /** Pending schedules matching `criteria`, earliest first (synchronous form). */
  getSchedules<Payload = unknown>(criteria?: ScheduleCriteria): Schedule<Payload>[] {
    return runtimeOf(this as Agent<unknown, unknown>).schedules.list(
      criteria,
    ) as Schedule<Payload>[];
  }

  /** Pending schedules matching `criteria` (`id`, `type`, `timeRange`), earliest first. */
  async listSchedules(criteria?: ScheduleCriteria): Promise<Schedule[]> {
    return runtimeOf(this as Agent<unknown, unknown>).schedules.list(criteria);
  }

  /** One pending schedule by id (synchronous form). */
  getSchedule<Payload = unknown>(id: string): Schedule<Payload> | undefined {
    return runtimeOf(this as Agent<unknown, unknown>).schedules.get(id) as
      | Schedule<Payload>
      | undefined;
  }

  /** One pending schedule by id. */
  async getScheduleById(id: string): Promise<Schedule | undefined> {
    return runtimeOf(this as Agent<unknown, unknown>).schedules.get(id);
  }

  /** Cancel a schedule; resolves to false when there was none with that id. */
  async cancelSchedule(id: string): Promise<boolean> {
    return runtimeOf(this as Agent<unknown, unknown>).schedules.cancel(id);
  }

  /**
   * Queue `this[callback](payload, item)` to run in the background: persisted, in queue
   * order, one at a time, retried as `options.retry` says; an item running when the
   * process dies runs again after a restart. Resolves to the item's id.
   */
  async queue<Payload = unknown>(
    callback: keyof this & string,
    payload: Payload,
    options?: QueueOptions,
  ): Promise<string> {
    return runtimeOf(this as Agent<unknown, unknown>).queue.push(callback, payload, options);
  }

  /** Remove a waiting item; resolves to false when there was none with that id. */
  async dequeue(id: string): Promise<boolean> {
    return runtimeOf(this as Agent<unknown, unknown>).queue.dequeue(id);
  }

  /** Remove every waiting item; resolves to how many. */
  async dequeueAll(): Promise<number> {
    return runtimeOf(this as Agent<unknown, unknown>).queue.dequeueAll();
  }

  /** Remove every waiting item for `callback`; resolves to how many. */
  async dequeueAllByCallback(callback: string): Promise<number> {
    return runtimeOf(this as Agent<unknown, unknown>).queue.dequeueAllByCallback(callback);
  }

  /** One waiting item by id. */
  async getQueue<Payload = unknown>(id: string): Promise<QueueItem<Payload> | undefined> {
    return runtimeOf(this as Agent<unknown, unknown>).queue.get(id) as
      | QueueItem<Payload>
      | undefined;
  }

  /** Waiting items whose payload has `key` equal to `value`, in queue order. */
  async getQueues<Payload = unknown>(key: string, value: unknown): Promise<QueueItem<Payload>[]> {
    return runtimeOf(this as Agent<unknown, unknown>).queue.find(
      key,
      value,
    ) as QueueItem<Payload>[];
  }

  /**
   * Run `fn` until it resolves, at most `maxAttempts` times (default 3) with jittered
   * exponential backoff; rejects with the last error. `shouldRetry` may stop early.
   *
   * @example
   * const data = await this.retry(async () => (await fetch(url)).json(), { maxAttempts: 5 });
   */
  async retry<T>(fn: (attempt: number) => Promise<T>, options?: RetryCallOptions): Promise<T> {
    const runtime = runtimeOf(this as Agent<unknown, unknown>);
    const resolved = resolveRetry(options, runtime.retryDefaults);
    return withRetries(fn, { ...resolved, shouldRetry: options?.shouldRetry });
  }

  /**
   * Keep this instance in memory (not evicted when idle) until the returned disposer is
   * called; the disposer may be called more than once.
   */
  async keepAlive(): Promise<() => void> {
    return runtimeOf(this as Agent<unknown, unknown>).keepAlive();
  }

  /** Run `fn` with a keep-alive held, released when it settles. */
  async keepAliveWhile<T>(fn: () => Promise<T>): Promise<T> {
    const dispose = await this.keepAlive();
    try {
      return await fn();
    } finally {
      dispose();
    }
  }

  /**
   * Delete this instance: its connections close (1001), its schedules and queue are
   * cancelled, and its database files are removed. The next access starts a fresh
   * instance with `initialState`.
   */
  async destroy(): Promise<void> {
    await runtimeOf(this as Agent<unknown, unknown>).destroy();
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

  /**
   * A frame the framework does not own (not RPC, state or `outpost_` frames): a string, or
   * a `Buffer` for a binary frame. Typed as Cloudflare's `WSMessage`, so an override taking
   * `string | ArrayBuffer` (the page's) or `string | Buffer` both fit.
   */
  onMessage(
    _connection: HookConnection,
    _message: string | ArrayBuffer | ArrayBufferView,
  ): void | Promise<void> {}

  /** A connection closed. */
  onClose(
    _connection: HookConnection,
    _code: number,
    _reason: string,
    _wasClean: boolean,
  ): void | Promise<void> {}

  /**
   * An error thrown by one of this agent's hooks, callables, schedules, queue items or
   * requests. Both of the SDK's signatures work: an override written `onError(error)` gets
   * the error; one written `onError(connection, error)` gets the connection (`undefined` off
   * a connection) and the error. The client only ever sees the message, never a stack.
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

const warnedStateHook = processWide("warnedStateHook", () => new WeakSet<object>());

/**
 * Say once per class that it overrides the deprecated `onStateUpdate` (and not
 * `onStateChanged`), as the SDK does.
 * @internal
 */
export function warnDeprecatedHooks(
  agent: Agent<unknown, unknown>,
  warn: (message: string) => void,
): void {
  if (stateChangeHook(agent) !== agent.onStateUpdate) return;
  const agentClass = agent.constructor;
  if (warnedStateHook.has(agentClass)) return;
  warnedStateHook.add(agentClass);
  warn(
    `${agentClass.name}: onStateUpdate is deprecated; rename it onStateChanged (same behaviour)`,
  );
}

/**
 * Call `onError` so that either of the SDK's signatures gets the error where it expects
 * it: an override written `onError(error)` gets `(error)`; any other `(connection, error)`,
 * with `connection` undefined off a connection. (The SDK passes `(error)` alone off a
 * connection, which puts the error in a two-parameter override's first parameter.)
 * @internal
 */
export function callOnError(
  agent: Agent<unknown, unknown>,
  connection: Connection | undefined,
  error: unknown,
): void | Promise<void> {
  if (agent.onError.length === 1) return agent.onError(error);
  return agent.onError(connection, error);
}

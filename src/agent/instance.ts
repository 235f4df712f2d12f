import type { Logger } from "pino";
import type { AuthClaims } from "../auth/policy.js";
import { CloseCode } from "../protocol/close-codes.js";
import { FrameType } from "../protocol/frames.js";
import type { AgentDatabase, SqlValue } from "../storage/agent-database.js";
import {
  type Agent,
  type AgentClass,
  type AgentRuntime,
  callOnError,
  stateChangeHook,
  warnDeprecatedHooks,
} from "./agent.js";
import type { BackgroundHost } from "./background.js";
import type { Connection, OutputGate, ServerConnection } from "./connection.js";
import { getCurrentAgent, runWithAgent } from "./context.js";
import { receiveFrame } from "./frame-dispatch.js";
import { InstanceConnections } from "./instance-connections.js";
import { TaskQueue } from "./queue.js";
import { setRequestAuth } from "./request-auth.js";
import { type RetryOptions, resolveRetry } from "./retry.js";
import { Schedules } from "./schedules.js";

export { publicMessage } from "./shared.js";

/** What an instance needs from the server hosting it. */
export interface InstanceHost {
  readonly env: unknown;
  readonly logger: Logger;
  /** The instance has nothing left to do: no connections, requests or running schedules. */
  onIdle(instance: AgentInstance): void;
  /** The instance's earliest schedule or queue item changed (`undefined`: none left). */
  onNextWakeup(instance: AgentInstance, time: number | undefined): void;
  /** `destroy()`: forget the instance and delete its data; the next access starts fresh. */
  onDestroy(instance: AgentInstance): void;
}

/** How an instance reaches its database without creating it before the first write. */
export interface InstanceStorage {
  open(): AgentDatabase;
  exists(): boolean;
  /** Close the database (cluster mode: after its last changes are shipped). */
  close?(database: AgentDatabase | undefined): void;
  /** Cluster mode: holds the instance's output until its changes are durable. */
  gate?: OutputGate & { barrier(): Promise<void> };
  /**
   * Cluster mode: awaited after a schedule's next due time is written (or a queue item is
   * claimed) and before its callback runs, so that a failover never runs one due time twice.
   */
  beforeRun?: () => Promise<void>;
}

const STATE_KEY = "state";

/**
 * One live agent instance: the user's `Agent` object, its database and state, its
 * connections, its schedules and its queue (the last three in their own modules, as is the
 * dispatch of client frames). Created and evicted by the server's registry.
 */
export class AgentInstance implements AgentRuntime {
  readonly agentName: string;
  readonly name: string;
  readonly key: string;
  readonly agent: Agent<unknown, unknown>;
  #database: AgentDatabase | undefined;
  readonly #storage: InstanceStorage;
  /** Cluster mode: every send of this instance's connections goes through it. */
  readonly gate: (OutputGate & { barrier(): Promise<void> }) | undefined;
  readonly #host: InstanceHost;
  readonly #log: Logger;
  readonly #connections: InstanceConnections;
  #state: unknown;
  #stateLoaded = false;
  /** Requests, schedule runs and connections being set up. */
  #inFlight = 0;
  /** Live `keepAlive()` leases: while any is held the instance is not evicted. */
  #keepAlive = 0;
  readonly schedules: Schedules;
  readonly queue: TaskQueue;
  readonly retryDefaults: Required<RetryOptions>;
  #closed = false;

  constructor(options: {
    agentName: string;
    name: string;
    agentClass: AgentClass;
    database: InstanceStorage;
    host: InstanceHost;
  }) {
    this.agentName = options.agentName;
    this.name = options.name;
    this.key = `${options.agentName}/${options.name}`;
    this.#storage = options.database;
    this.gate = options.database.gate;
    this.#host = options.host;
    this.#log = options.host.logger.child({ agent: options.agentName, instance: options.name });
    this.#connections = new InstanceConnections(this, this.#log);
    this.agent = new options.agentClass({ runtime: this }, options.host.env);
    warnDeprecatedHooks(this.agent, (message) => this.#log.warn(message));
    // The SDK's `static options = { retry }` sets the defaults of every retry policy.
    const statics = (options.agentClass as { options?: { retry?: RetryOptions } }).options;
    this.retryDefaults = resolveRetry(statics?.retry);
    const background: BackgroundHost = {
      agent: this.agent,
      log: this.#log,
      retryDefaults: this.retryDefaults,
      track: (work) => this.track(work),
      invoke: (method, args) =>
        runWithAgent({ agent: this.agent, connection: undefined }, async () =>
          method.apply(this.agent, args),
        ),
      failed: (error) => this.#notifyError(undefined, error),
      changed: () => this.#reportWakeup(),
    };
    const beforeRun = options.database.beforeRun;
    this.schedules = new Schedules(
      background,
      { read: () => this.#existingDb?.schedules, write: () => this.#db.schedules },
      beforeRun,
    );
    this.queue = new TaskQueue(
      background,
      { read: () => this.#existingDb?.queue, write: () => this.#db.queue },
      beforeRun,
    );
  }

  /** The database, created on first use. */
  get #db(): AgentDatabase {
    // Agent code still running after eviction or destroy() must not create the file again.
    if (this.#closed) throw new Error("this agent instance is closed");
    this.#database ??= this.#storage.open();
    return this.#database;
  }

  /** For reads: the database when one exists on disk; never creates a file. */
  get #existingDb(): AgentDatabase | undefined {
    if (this.#database === undefined && !this.#storage.exists()) return undefined;
    return this.#db;
  }

  /** Runs `onStart`, then any schedule already due and any queue item waiting. */
  async start(): Promise<void> {
    await runWithAgent({ agent: this.agent, connection: undefined }, () => this.agent.onStart());
    // Arming the schedules reports the instance's next wakeup, queue included.
    this.schedules.start();
    this.queue.start();
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  get idle(): boolean {
    return this.#connections.size === 0 && this.#inFlight === 0 && this.#keepAlive === 0;
  }

  // --- AgentRuntime (what `Agent` methods call) ---

  readState(): unknown {
    if (!this.#stateLoaded) {
      this.#state = this.#existingDb?.readJson(STATE_KEY);
      this.#stateLoaded = true;
    }
    return this.#state;
  }

  writeState(state: unknown): void {
    // A read-only connection must not change state through a callable either.
    const caller = getCurrentAgent().connection;
    if (caller?.readonly && this.#connections.get(caller.id) === caller) {
      throw new Error("Connection is readonly");
    }
    this.agent.validateStateChange(state, "server");
    this.commitState(state, "server");
  }

  /** @internal A state change already validated: write it, send it to the others, report it. */
  commitState(state: unknown, source: ServerConnection | "server"): void {
    const json = JSON.stringify(state);
    if (json === undefined) throw new TypeError("state must be JSON-serializable");
    this.#db.writeJson(STATE_KEY, json);
    this.#state = JSON.parse(json);
    this.#stateLoaded = true;
    const frame = `{"type":"${FrameType.State}","state":${json}}`;
    this.#connections.stateChanged(this.#state, frame, source);
    const hook = stateChangeHook(this.agent);
    if (hook === undefined) return;
    try {
      const result = hook.call(this.agent, this.#state, source);
      if (result instanceof Promise) result.catch((error) => this.reportError(undefined, error));
    } catch (error) {
      this.reportError(undefined, error);
    }
  }

  sql<Row>(strings: TemplateStringsArray, values: readonly SqlValue[]): Row[] {
    return this.#db.sql<Row>(strings, values);
  }

  keepAlive(): () => void {
    this.#keepAlive++;
    let disposed = false;
    return () => {
      if (disposed) return;
      disposed = true;
      this.#keepAlive--;
      this.checkIdle();
    };
  }

  async destroy(): Promise<void> {
    if (this.#closed) return;
    this.schedules.clear();
    this.queue.dequeueAll();
    for (const connection of this.#connections.values()) {
      connection.close(CloseCode.GoingAway, "agent destroyed");
    }
    this.#host.onDestroy(this);
  }

  broadcast(message: string | ArrayBuffer | ArrayBufferView, without?: readonly string[]): void {
    this.#connections.broadcast(message, without);
  }

  connections(tag?: string): Iterable<Connection> {
    return this.#connections.accepted(tag);
  }

  connection(id: string): Connection | undefined {
    return this.#connections.acceptedById(id);
  }

  /** `reportError` for a connection's frame handlers, one function for all of them. */
  readonly reportTaskError = (connection: ServerConnection, error: unknown): void =>
    this.reportError(connection, error);

  reportError(connection: Connection | undefined, error: unknown): void {
    this.#log.error({ err: error, connection: connection?.id }, "agent error");
    this.#notifyError(connection, error);
  }

  /** Pass an error already logged to the agent's `onError`. */
  #notifyError(connection: Connection | undefined, error: unknown): void {
    if (this.#closed) return;
    try {
      const result = callOnError(this.agent, connection, error);
      if (result instanceof Promise)
        result.catch((e) => this.#log.error({ err: e }, "onError threw"));
    } catch (e) {
      this.#log.error({ err: e }, "onError threw");
    }
  }

  // --- connections (`instance-connections.ts`) and their frames (`frame-dispatch.ts`) ---

  /** Take over an authenticated socket: onConnect, then identity and state. */
  attach(connection: ServerConnection, makeRequest: () => Request): void {
    this.#connections.attach(connection, makeRequest);
  }

  /** A frame arrived; it is handled after every earlier frame of the same connection. */
  receive(connection: ServerConnection, data: Buffer, isBinary: boolean): void {
    receiveFrame(this, connection, data, isBinary);
  }

  /** The socket closed: forget it now, tell the agent in frame order. */
  detach(connection: ServerConnection, code: number, reason: string): void {
    this.#connections.detach(connection, code, reason);
  }

  // --- requests and schedules ---

  /** Run `work` counted as activity, so the instance is not evicted meanwhile. */
  async track<T>(work: () => Promise<T>): Promise<T> {
    this.#inFlight++;
    try {
      return await work();
    } finally {
      this.#inFlight--;
      this.checkIdle();
    }
  }

  /** @internal Something ended (a connection, a request, a lease): tell the host if idle. */
  checkIdle(): void {
    if (this.idle) this.#host.onIdle(this);
  }

  /** Plain HTTP to the agent's URL, from a caller with verified `claims` (with `auth`). */
  fetch(request: Request, claims?: AuthClaims): Promise<Response> {
    if (claims !== undefined) setRequestAuth(request, claims);
    return this.track(async () => {
      const response = await runWithAgent(
        { agent: this.agent, connection: undefined, request },
        () => this.agent.onRequest(request),
      );
      // The response leaves only once what the request changed is durable.
      await this.gate?.barrier();
      return response;
    });
  }

  /** Tell the host when this instance must next be awake: its earliest schedule or item. */
  #reportWakeup(): void {
    if (this.#closed) return;
    const schedule = this.schedules.nextWakeup();
    const item = this.queue.nextWakeup();
    const next =
      schedule === undefined ? item : item === undefined ? schedule : Math.min(schedule, item);
    this.#host.onNextWakeup(this, next);
  }

  /**
   * Close every connection with `code`, then wait (at most `timeoutMs`) until every socket
   * has closed and every handler, `onClose` included, has finished.
   */
  async drain(code: number, reason: string, timeoutMs: number): Promise<void> {
    const connections = [...this.#connections.values()];
    for (const connection of connections) connection.close(code, reason);
    const deadline = Date.now() + timeoutMs;
    const settled = () =>
      this.#connections.size === 0 && this.#inFlight === 0 && connections.every((c) => !c.busy);
    while (!settled() && Date.now() < deadline) {
      await new Promise<void>((resolve) => setTimeout(resolve, 10));
    }
    for (const connection of this.#connections.values()) connection.terminate();
  }

  /** Stop timers and close the database. The instance cannot be used afterwards. */
  close(): void {
    if (this.#closed) return;
    // First, while the database is open: they give back claims this process still holds.
    this.schedules.close();
    this.queue.close();
    this.#closed = true;
    if (this.#storage.close !== undefined) this.#storage.close(this.#database);
    else this.#database?.close();
  }

  get closed(): boolean {
    return this.#closed;
  }
}

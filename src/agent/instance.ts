import type { Logger } from "pino";
import type { AuthClaims } from "../auth/policy.js";
import { CloseCode } from "../protocol/close-codes.js";
import {
  EMPTY_MCP_SERVERS,
  FrameType,
  parseClientFrame,
  type RpcRequestFrame,
  type ServerFrame,
} from "../protocol/frames.js";
import type { AgentDatabase, SqlValue } from "../storage/agent-database.js";
import {
  Agent,
  type AgentClass,
  type AgentRuntime,
  type ConnectionContext,
  callOnError,
  stateChangeHook,
  warnDeprecatedHooks,
} from "./agent.js";
import type { BackgroundHost } from "./background.js";
import { findCallable } from "./callable.js";
import type { Connection, OutputGate, ServerConnection } from "./connection.js";
import { connectionTags, TagIndex } from "./connection-tags.js";
import { getCurrentAgent, runWithAgent } from "./context.js";
import { TaskQueue } from "./queue.js";
import { setRequestAuth } from "./request-auth.js";
import { type RetryOptions, resolveRetry } from "./retry.js";
import { Schedules } from "./schedules.js";
import { StreamingResponse } from "./streaming-response.js";

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
/** The same bytes for every connect. */
const EMPTY_MCP_SERVERS_TEXT = JSON.stringify(EMPTY_MCP_SERVERS);

/**
 * One live agent instance: the user's `Agent` object, its database, its connections, its
 * schedules and its queue (both in their own modules). Created and evicted by the server's
 * registry.
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
  readonly #connections = new Map<string, ServerConnection>();
  readonly #tags = new TagIndex();
  #state: unknown;
  #stateLoaded = false;
  /** The last state frame sent, with the state it was made from (see `#stateText`). */
  #stateFrame: { state: unknown; text: string } | undefined;
  readonly #identityTexts: [string?, string?] = [];
  /** Requests, schedule runs and connections being set up. */
  #inFlight = 0;
  /** Live `keepAlive()` leases: while any is held the instance is not evicted. */
  #keepAlive = 0;
  readonly schedules: Schedules;
  readonly queue: TaskQueue;
  readonly retryDefaults: Required<RetryOptions>;
  #closed = false;
  #warnedVerifiedRefused = false;

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
    this.#commitState(state, "server");
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
      if (this.idle) this.#host.onIdle(this);
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
    for (const connection of this.#connections.values()) {
      if (!connection.accepted) continue;
      if (without?.includes(connection.id)) continue;
      connection.send(message);
    }
  }

  connections(tag?: string): Iterable<Connection> {
    if (tag === undefined) return [...this.#connections.values()].filter((c) => c.accepted);
    // Every connection carries its id as a tag, as in the SDK.
    const own = this.#connections.get(tag);
    const tagged = [...this.#tags.get(tag)].filter((c) => c.accepted);
    return own?.accepted ? [own, ...tagged.filter((c) => c !== own)] : tagged;
  }

  connection(id: string): Connection | undefined {
    const connection = this.#connections.get(id);
    return connection?.accepted ? connection : undefined;
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

  // --- connections ---

  /** Take over an authenticated socket: onConnect, then identity and state. */
  attach(connection: ServerConnection, makeRequest: () => Request): void {
    this.#connections.set(connection.id, connection);
    // Built on first read, here and for getCurrentAgent(): most agents never look at it.
    let request: Request | undefined;
    const ctx: ConnectionContext = {
      get request() {
        request ??= makeRequest();
        return request;
      },
    };
    const current = {
      agent: this.agent,
      connection,
      get request() {
        return ctx.request;
      },
    };
    connection.enqueue(() => runWithAgent(current, () => this.#connect(connection, ctx)));
  }

  /**
   * Tags, the read-only check and `onConnect`, then identity and state. Not `async`: with
   * the default tags and a synchronous `onConnect`, the frames go out in the same turn and
   * no promise is made (each costs, with `getCurrentAgent`'s AsyncLocalStorage active).
   */
  #connect(connection: ServerConnection, ctx: ConnectionContext): Promise<void> | undefined {
    if (this.agent.getConnectionTags !== Agent.prototype.getConnectionTags) {
      return this.#connectTagged(connection, ctx);
    }
    let result: void | Promise<void>;
    try {
      if (this.agent.shouldConnectionBeReadonly(connection, ctx) === true) connection.restrict();
      result = this.agent.onConnect(connection, ctx);
    } catch (error) {
      this.#connectFailed(connection, error);
      return;
    }
    if (isThenable(result)) {
      return Promise.resolve(result).then(
        () => this.#connected(connection),
        (error) => this.#connectFailed(connection, error),
      );
    }
    this.#connected(connection);
  }

  /** `#connect` for an agent that overrides `getConnectionTags`. */
  async #connectTagged(connection: ServerConnection, ctx: ConnectionContext): Promise<void> {
    try {
      const tags = connectionTags(
        connection.id,
        await this.agent.getConnectionTags(connection, ctx),
      );
      if (!this.#connections.has(connection.id)) return; // closed while tags were computed
      connection.setTags(tags);
      this.#tags.add(connection, tags);
      if (this.agent.shouldConnectionBeReadonly(connection, ctx) === true) connection.restrict();
      await this.agent.onConnect(connection, ctx);
    } catch (error) {
      this.#connectFailed(connection, error);
      return;
    }
    this.#connected(connection);
  }

  #connectFailed(connection: ServerConnection, error: unknown): void {
    this.reportError(connection, error);
    connection.close(CloseCode.InternalError, "internal error");
  }

  /** `onConnect` has finished: identity, state and the MCP list, in one write. */
  #connected(connection: ServerConnection): void {
    if (connection.closedWith === CloseCode.Unauthorized && connection.auth !== undefined) {
      this.#warnVerifiedRefused();
    }
    if (!connection.isOpen) return;
    const state = this.readState() ?? this.agent.initialState;
    // The empty MCP list follows, as the SDK sends it, so the official useAgent's
    // onMcpUpdate fires; all of them in one corked write.
    connection.sendAll(
      state === undefined
        ? [this.#identityText(false), EMPTY_MCP_SERVERS_TEXT]
        : [this.#identityText(true), this.#stateText(state), EMPTY_MCP_SERVERS_TEXT],
    );
    connection.markAccepted();
  }

  /** The identity frame, serialized once per instance for each value of `stateFollows`. */
  #identityText(stateFollows: boolean): string {
    const index = stateFollows ? 1 : 0;
    this.#identityTexts[index] ??= JSON.stringify({
      type: FrameType.Identity,
      agent: this.agentName,
      name: this.name,
      ...(stateFollows && { stateFollows: true }),
    } satisfies ServerFrame);
    return this.#identityTexts[index];
  }

  /**
   * The state frame for `state`, serialized once for as long as the state is the same
   * object: every connect in between sends the same text.
   */
  #stateText(state: unknown): string {
    if (this.#stateFrame === undefined || this.#stateFrame.state !== state) {
      const text = JSON.stringify({ type: FrameType.State, state } satisfies ServerFrame);
      this.#stateFrame = { state, text };
    }
    return this.#stateFrame.text;
  }

  /**
   * onConnect closed 4001 a connection whose token the policy had just verified. The page's
   * pattern checks the token again inside a try/catch, which turns any error there (such as
   * the ReferenceError of a `verifyJWT` never imported) into "Unauthorized" for everyone and
   * logs nothing; this line is the only trace. Once per instance: the cause is in the code.
   */
  #warnVerifiedRefused(): void {
    if (this.#warnedVerifiedRefused) return;
    this.#warnedVerifiedRefused = true;
    this.#log.warn(
      "onConnect closed 4001 a connection whose token was already verified; if onConnect checks the token itself in a try/catch, an error there (e.g. verifyJWT used but not imported) becomes this 4001 for every client. connection.auth holds the verified claims (logged once)",
    );
  }

  /** A frame arrived; it is handled after every earlier frame of the same connection. */
  receive(connection: ServerConnection, data: Buffer, isBinary: boolean): void {
    connection.enqueue(() =>
      runWithAgent({ agent: this.agent, connection }, () =>
        this.#handleFrame(connection, data, isBinary),
      ),
    );
  }

  /** The socket closed: forget it now, tell the agent in frame order. */
  detach(connection: ServerConnection, code: number, reason: string): void {
    connection.clearExpiry();
    this.#connections.delete(connection.id);
    this.#tags.remove(connection);
    // Not `async`: a synchronous onClose (the default) makes no promise.
    connection.enqueue(() => {
      // A destroyed instance is gone: its hooks do not run against deleted data.
      if (this.#closed) return;
      let result: void | Promise<void>;
      try {
        result = runWithAgent({ agent: this.agent, connection }, () =>
          this.agent.onClose(connection, code, reason, code !== 1006),
        );
      } catch (error) {
        this.reportError(connection, error);
        result = undefined;
      }
      if (isThenable(result)) {
        return Promise.resolve(result).then(
          () => this.#afterClose(),
          (error) => {
            this.reportError(connection, error);
            this.#afterClose();
          },
        );
      }
      this.#afterClose();
    }, true);
  }

  #afterClose(): void {
    if (this.idle) this.#host.onIdle(this);
  }

  #handleFrame(connection: ServerConnection, data: Buffer, isBinary: boolean): unknown {
    if (!connection.isOpen) return undefined;
    if (isBinary) return this.#userMessage(connection, data);
    const text = data.toString("utf8");
    const parsed = parseClientFrame(text);
    switch (parsed.kind) {
      case "rpc":
        return this.#rpc(connection, parsed.frame);
      case "state":
        return this.#clientState(connection, parsed.frame.state);
      case "auth":
        return connection.refreshAuth(parsed.frame.token);
      case "invalid":
        if (parsed.id !== undefined) {
          connection.sendFrame({
            type: FrameType.Rpc,
            id: parsed.id,
            success: false,
            error: parsed.error,
          });
        } else {
          connection.close(CloseCode.PolicyViolation, parsed.error);
        }
        return undefined;
      default:
        return this.#userMessage(connection, text);
    }
  }

  async #userMessage(connection: ServerConnection, message: string | Buffer): Promise<void> {
    const refusal = connection.authorize("message");
    if (refusal !== undefined) {
      connection.sendFrame({ type: FrameType.Refused, action: "message", error: refusal });
      return;
    }
    try {
      await this.agent.onMessage(connection, message);
    } catch (error) {
      this.reportError(connection, error);
    }
  }

  /**
   * Answer one call. Not `async`: a synchronous callable is answered without allocating a
   * promise; only a callable that returns one makes the connection wait for it.
   */
  #rpc(connection: ServerConnection, frame: RpcRequestFrame): Promise<void> | undefined {
    const { id, method, args } = frame;
    const refusal = connection.authorize("rpc");
    if (refusal !== undefined) {
      connection.sendFrame({ type: FrameType.Rpc, id, success: false, error: refusal });
      return;
    }
    const found = findCallable(this.agent, method);
    if (found === undefined) {
      connection.sendFrame({
        type: FrameType.Rpc,
        id,
        success: false,
        error: `Method ${method} is not callable`,
      });
      return;
    }
    if (found.metadata.streaming) {
      // A stream may run for a long time: it starts in frame order, then runs alongside
      // later frames instead of holding them. It counts as activity, so shutdown waits for
      // it and the instance is not evicted (its database closed) under it.
      const stream = new StreamingResponse(connection, id);
      void this.track(async () => {
        try {
          const result = await found.method.apply(this.agent, [stream, ...args]);
          if (!stream.isClosed) stream.end(result);
        } catch (error) {
          this.reportError(connection, error);
          if (!stream.isClosed) stream.error(publicMessage(error));
        }
      });
      return;
    }
    let result: unknown;
    try {
      result = found.method.apply(this.agent, args);
    } catch (error) {
      this.#rpcFailed(connection, id, error);
      return;
    }
    if (isThenable(result)) {
      return Promise.resolve(result).then(
        (value) => this.#rpcAnswer(connection, id, method, value),
        (error) => this.#rpcFailed(connection, id, error),
      );
    }
    this.#rpcAnswer(connection, id, method, result);
  }

  #rpcFailed(connection: ServerConnection, id: string, error: unknown): void {
    this.reportError(connection, error);
    connection.sendFrame({ type: FrameType.Rpc, id, success: false, error: publicMessage(error) });
  }

  #rpcAnswer(connection: ServerConnection, id: string, method: string, result: unknown): void {
    let text: string;
    try {
      text = JSON.stringify({ type: FrameType.Rpc, id, success: true, result, done: true });
    } catch {
      text = JSON.stringify({
        type: FrameType.Rpc,
        id,
        success: false,
        error: `Result of ${method} is not serializable`,
      });
    }
    connection.send(text);
  }

  async #clientState(connection: ServerConnection, state: unknown): Promise<void> {
    if (connection.readonly) {
      connection.sendFrame({ type: FrameType.StateError, error: "Connection is readonly" });
      return;
    }
    const refusal = connection.authorize("state:write");
    if (refusal !== undefined) {
      connection.sendFrame({ type: FrameType.StateError, error: refusal });
      return;
    }
    try {
      this.agent.validateStateChange(state, connection);
    } catch (error) {
      connection.sendFrame({
        type: FrameType.StateError,
        error: `State update rejected: ${publicMessage(error)}`,
      });
      return;
    }
    try {
      this.#commitState(state, connection);
    } catch (error) {
      this.reportError(connection, error);
      connection.sendFrame({ type: FrameType.StateError, error: "State could not be saved" });
    }
  }

  #commitState(state: unknown, source: ServerConnection | "server"): void {
    const json = JSON.stringify(state);
    if (json === undefined) throw new TypeError("state must be JSON-serializable");
    this.#db.writeJson(STATE_KEY, json);
    this.#state = JSON.parse(json);
    this.#stateLoaded = true;
    const frame = `{"type":"${FrameType.State}","state":${json}}`;
    this.#stateFrame = { state: this.#state, text: frame };
    for (const connection of this.#connections.values()) {
      if (connection.accepted && connection !== source) connection.send(frame);
    }
    const hook = stateChangeHook(this.agent);
    if (hook === undefined) return;
    try {
      const result = hook.call(this.agent, this.#state, source);
      if (result instanceof Promise) result.catch((error) => this.reportError(undefined, error));
    } catch (error) {
      this.reportError(undefined, error);
    }
  }

  // --- requests and schedules ---

  /** Run `work` counted as activity, so the instance is not evicted meanwhile. */
  async track<T>(work: () => Promise<T>): Promise<T> {
    this.#inFlight++;
    try {
      return await work();
    } finally {
      this.#inFlight--;
      if (this.idle) this.#host.onIdle(this);
    }
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

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === "object" || typeof value === "function") &&
    typeof (value as PromiseLike<unknown>).then === "function"
  );
}

/** The message a client may see for an error thrown by agent code: never a stack. */
export function publicMessage(error: unknown): string {
  if (error instanceof Error && typeof error.message === "string" && error.message.length > 0) {
    return error.message.split("\n", 1)[0]!.slice(0, 500);
  }
  return "Internal error";
}

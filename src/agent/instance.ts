import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { AuthClaims } from "../auth/policy.js";
import { CloseCode } from "../protocol/close-codes.js";
import {
  FrameType,
  parseClientFrame,
  type RpcRequestFrame,
  type ServerFrame,
} from "../protocol/frames.js";
import type { AgentDatabase, SqlValue, StoredSchedule } from "../storage/agent-database.js";
import {
  Agent,
  type AgentClass,
  type AgentRuntime,
  type ConnectionContext,
  callOnError,
  type Schedule,
  stateChangeHook,
} from "./agent.js";
import { findCallable } from "./callable.js";
import type { Connection, ServerConnection } from "./connection.js";
import { connectionTags, TagIndex } from "./connection-tags.js";
import { getCurrentAgent, runWithAgent } from "./context.js";
import { setRequestAuth } from "./request-auth.js";
import { StreamingResponse } from "./streaming-response.js";

/** What an instance needs from the server hosting it. */
export interface InstanceHost {
  readonly env: unknown;
  readonly logger: Logger;
  /** The instance has nothing left to do: no connections, requests or running schedules. */
  onIdle(instance: AgentInstance): void;
  /** The instance's earliest schedule changed (`undefined`: none left). */
  onNextWakeup(instance: AgentInstance, time: number | undefined): void;
}

/** How an instance reaches its database without creating it before the first write. */
export interface InstanceStorage {
  open(): AgentDatabase;
  exists(): boolean;
}

const STATE_KEY = "state";

/**
 * One live agent instance: the user's `Agent` object, its database, its connections and
 * its schedule timer. Created and evicted by the server's registry.
 */
export class AgentInstance implements AgentRuntime {
  readonly agentName: string;
  readonly name: string;
  readonly key: string;
  readonly agent: Agent<unknown, unknown>;
  #database: AgentDatabase | undefined;
  readonly #storage: InstanceStorage;
  readonly #host: InstanceHost;
  readonly #log: Logger;
  readonly #connections = new Map<string, ServerConnection>();
  readonly #tags = new TagIndex();
  #state: unknown;
  #stateLoaded = false;
  /** Requests, schedule runs and connections being set up. */
  #inFlight = 0;
  #scheduleTimer: NodeJS.Timeout | undefined;
  /** `onStart` has finished: schedules may run from now on. */
  #started = false;
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
    this.#host = options.host;
    this.#log = options.host.logger.child({ agent: options.agentName, instance: options.name });
    this.agent = new options.agentClass({ runtime: this }, options.host.env);
  }

  /** The database, created on first use. */
  get #db(): AgentDatabase {
    this.#database ??= this.#storage.open();
    return this.#database;
  }

  /** For reads: the database when one exists on disk; never creates a file. */
  get #existingDb(): AgentDatabase | undefined {
    if (this.#database === undefined && !this.#storage.exists()) return undefined;
    return this.#db;
  }

  /** Runs `onStart`, then any schedule already due. */
  async start(): Promise<void> {
    await runWithAgent({ agent: this.agent, connection: undefined }, () => this.agent.onStart());
    this.#started = true;
    this.#armSchedules();
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  get idle(): boolean {
    return this.#connections.size === 0 && this.#inFlight === 0;
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

  schedule(when: Date | number, callback: string, payload: unknown): Schedule {
    if (typeof (this.agent as unknown as Record<string, unknown>)[callback] !== "function") {
      throw new TypeError(`schedule(): ${callback} is not a method of this agent`);
    }
    let time: number;
    if (when instanceof Date) time = when.getTime();
    else if (typeof when === "number" && Number.isFinite(when) && when >= 0)
      time = Date.now() + when * 1000;
    else throw new TypeError("schedule(): `when` must be a Date or a number of seconds >= 0");
    if (!Number.isFinite(time)) throw new TypeError("schedule(): invalid date");
    const stored: StoredSchedule = {
      id: randomUUID(),
      callback,
      payload: payload ?? null,
      time,
      type: when instanceof Date ? "scheduled" : "delayed",
    };
    this.#db.insertSchedule(stored);
    this.#armSchedules();
    return toSchedule(stored);
  }

  getSchedules(): Schedule[] {
    return (this.#existingDb?.listSchedules() ?? []).map((s) => toSchedule(s));
  }

  getSchedule(id: string): Schedule | undefined {
    const stored = this.#existingDb?.getSchedule(id);
    return stored === undefined ? undefined : toSchedule(stored);
  }

  cancelSchedule(id: string): boolean {
    const removed = this.#existingDb?.deleteSchedule(id) ?? false;
    if (removed) this.#armSchedules();
    return removed;
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

  async #connect(connection: ServerConnection, ctx: ConnectionContext): Promise<void> {
    try {
      // Not overridden: no await, no array, for the common connect.
      if (this.agent.getConnectionTags !== Agent.prototype.getConnectionTags) {
        const tags = connectionTags(
          connection.id,
          await this.agent.getConnectionTags(connection, ctx),
        );
        if (!this.#connections.has(connection.id)) return; // closed while tags were computed
        connection.setTags(tags);
        this.#tags.add(connection, tags);
      }
      if (this.agent.shouldConnectionBeReadonly(connection, ctx) === true) connection.restrict();
      await this.agent.onConnect(connection, ctx);
    } catch (error) {
      this.reportError(connection, error);
      connection.close(CloseCode.InternalError, "internal error");
      return;
    }
    if (!connection.isOpen) return;
    const state = this.readState() ?? this.agent.initialState;
    const identity: ServerFrame = {
      type: FrameType.Identity,
      agent: this.agentName,
      name: this.name,
      ...(state !== undefined && { stateFollows: true }),
    };
    if (state === undefined) connection.sendFrame(identity);
    else connection.sendFrames([identity, { type: FrameType.State, state }]);
    connection.markAccepted();
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
    connection.enqueue(async () => {
      try {
        await runWithAgent({ agent: this.agent, connection }, () =>
          this.agent.onClose(connection, code, reason, code !== 1006),
        );
      } catch (error) {
        this.reportError(connection, error);
      }
      if (this.idle) this.#host.onIdle(this);
    }, true);
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
    return this.track(async () =>
      runWithAgent({ agent: this.agent, connection: undefined, request }, () =>
        this.agent.onRequest(request),
      ),
    );
  }

  #armSchedules(): void {
    // A schedule made inside onStart waits for onStart to finish, like everything else.
    if (this.#closed || !this.#started) return;
    if (this.#scheduleTimer !== undefined) clearTimeout(this.#scheduleTimer);
    this.#scheduleTimer = undefined;
    const next = this.#existingDb?.nextScheduleTime();
    this.#host.onNextWakeup(this, next);
    if (next === undefined) return;
    const delay = Math.min(Math.max(0, next - Date.now()), 2 ** 31 - 1);
    this.#scheduleTimer = setTimeout(() => void this.runDueSchedules(), delay);
    this.#scheduleTimer.unref();
  }

  /** Run every schedule whose time has come, oldest first; each is removed once it ran. */
  async runDueSchedules(): Promise<void> {
    if (this.#closed) return;
    await this.track(async () => {
      const now = Date.now();
      for (const due of this.#db.listSchedules()) {
        if (due.time > now || this.#closed) break;
        const method = (this.agent as unknown as Record<string, unknown>)[due.callback];
        try {
          if (typeof method !== "function") throw new Error(`${due.callback} is not a method`);
          await runWithAgent({ agent: this.agent, connection: undefined }, () =>
            method.call(this.agent, due.payload, toSchedule(due)),
          );
        } catch (error) {
          this.reportError(undefined, error);
        }
        if (this.#closed) return;
        this.#db.deleteSchedule(due.id);
      }
    });
    this.#armSchedules();
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
    this.#closed = true;
    if (this.#scheduleTimer !== undefined) clearTimeout(this.#scheduleTimer);
    this.#database?.close();
  }
}

function toSchedule(stored: StoredSchedule): Schedule {
  return {
    id: stored.id,
    callback: stored.callback,
    payload: stored.payload,
    time: Math.floor(stored.time / 1000),
    type: stored.type,
  };
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

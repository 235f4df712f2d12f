import { createHash } from "node:crypto";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Logger } from "pino";
import { AgentDatabase, type Durability } from "../storage/agent-database.js";
import { WakeupIndex } from "../storage/wakeups.js";
import type { AgentClass } from "./agent.js";
import { type AgentHost, addHost, type RemoteAgent, recordHost, removeHost } from "./hosts.js";
import { AgentInstance, type InstanceHost, type InstanceStorage } from "./instance.js";

export interface RegistryOptions {
  agents: ReadonlyMap<string, AgentClass>;
  dataDir: string;
  env: unknown;
  logger: Logger;
  durability: Durability;
  /** Milliseconds an instance with nothing to do stays in memory. */
  idleTimeout: number;
  /** Live instances this process holds at most; idle ones are evicted to make room. */
  maxInstances: number;
  /**
   * Where instances keep their data, when not in local files created on first write
   * (cluster mode: restored from PostgreSQL, changes shipped back).
   */
  storage?: StorageProvider;
  /** Cluster mode: where an instance another node owns can be reached (`getAgentByName`). */
  locate?: (agent: string, name: string) => Promise<RemoteAgent | undefined>;
}

/** Prepares an instance's storage before it starts; told when the instance is let go. */
export interface StorageProvider {
  prepare(agent: string, name: string, path: string): Promise<InstanceStorage>;
  released(agent: string, name: string): void;
  /** `destroy()`: the instance's data is gone for good, wherever it was kept. */
  destroyed?(agent: string, name: string): void;
  /**
   * When an instance must next be awake (`undefined`: never), where every node can see it;
   * given, it replaces this process's own wakeup index.
   */
  wakeup?(agent: string, name: string, time: number | undefined): void;
}

/** Thrown by `get` when every slot holds a busy instance; the caller refuses with 1013/503. */
export class InstanceLimitError extends Error {
  override readonly name = "InstanceLimitError";
}

/**
 * Exactly one live instance per (agent, name) in this process. `get` starts an instance
 * once (concurrent callers share the same start) and resolves only after `onStart` has
 * finished; a failed start is forgotten so the next `get` tries again. Idle instances are
 * evicted and their databases closed; schedules wake them through the wakeup index.
 */
export class InstanceRegistry implements InstanceHost, AgentHost {
  readonly env: unknown;
  readonly logger: Logger;
  readonly #options: RegistryOptions;
  readonly #live = new Map<string, AgentInstance>();
  readonly #starting = new Map<string, Promise<AgentInstance>>();
  readonly #idleTimers = new Map<string, NodeJS.Timeout>();
  /** Instances being dropped: not handed out while they drain; `get` waits for the drop. */
  readonly #dropping = new Map<string, Promise<void>>();
  readonly #wakeups: WakeupIndex;
  #wakeupTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: RegistryOptions) {
    this.#options = options;
    this.env = options.env;
    this.logger = options.logger;
    this.#wakeups = new WakeupIndex(options.dataDir);
    this.#armWakeups();
    addHost(this);
  }

  /** The URL name `agentClass` is served under here (for `getAgentByName`). */
  locate(agent: string, name: string): Promise<RemoteAgent | undefined> {
    return this.#options.locate?.(agent, name) ?? Promise.resolve(undefined);
  }

  urlNameOf(agentClass: AgentClass): string | undefined {
    for (const [urlName, served] of this.#options.agents) if (served === agentClass) return urlName;
    return undefined;
  }

  /** The live instance, without starting one. */
  peek(agent: string, name: string): AgentInstance | undefined {
    return this.#live.get(`${agent}/${name}`);
  }

  get instances(): Iterable<AgentInstance> {
    return this.#live.values();
  }

  get size(): number {
    return this.#live.size;
  }

  /**
   * The live instance, taken as `get` takes it (no longer idle-evicted), without waiting a
   * turn; `undefined` when it is not running (then `get` starts it).
   */
  take(agent: string, name: string): AgentInstance | undefined {
    if (this.#closed) return undefined;
    const key = `${agent}/${name}`;
    if (this.#dropping.has(key)) return undefined;
    const live = this.#live.get(key);
    if (live !== undefined) this.#cancelIdle(key);
    return live;
  }

  /** Get or start the instance; resolves after its `onStart` has finished. */
  get(agent: string, name: string): Promise<AgentInstance> {
    if (this.#closed) return Promise.reject(new Error("server is shutting down"));
    const live = this.take(agent, name);
    if (live !== undefined) return Promise.resolve(live);
    const key = `${agent}/${name}`;
    // A connection arriving while its instance drains would be closed with the others:
    // it gets the next activation instead.
    const dropping = this.#dropping.get(key);
    if (dropping !== undefined) return dropping.then(() => this.get(agent, name));
    let starting = this.#starting.get(key);
    if (starting === undefined) {
      if (!this.#makeRoom()) {
        this.logger.warn(
          { event: "instance_limit", agent, instance: name, max: this.#options.maxInstances },
          "instance limit reached: every live instance is busy",
        );
        return Promise.reject(new InstanceLimitError("too many live instances"));
      }
      const attempt = this.#start(agent, name, key);
      this.#starting.set(key, attempt);
      // A start that fails synchronously (the database cannot be opened) rejects before
      // the line above runs, so #start's own cleanup is too early: forget it here too.
      attempt.catch(() => {
        if (this.#starting.get(key) === attempt) this.#starting.delete(key);
      });
      starting = attempt;
    }
    return starting;
  }

  /**
   * Is there room for one more instance? Evicts the idle instance that has waited longest
   * when the process is full; never touches an instance with connections or work.
   */
  #makeRoom(): boolean {
    if (this.#live.size + this.#starting.size < this.#options.maxInstances) return true;
    // Idle timers are kept in insertion order: the first one has been idle longest.
    for (const key of this.#idleTimers.keys()) {
      const instance = this.#live.get(key);
      if (instance === undefined || !instance.idle) continue;
      this.#evict(instance);
      return true;
    }
    return false;
  }

  /**
   * Stop serving `agent/name` now (cluster mode: this node lost it): close its connections
   * with `code` and evict it, its output unsent. While it drains, `take` finds nothing and
   * `get` waits for the drop, then starts the instance afresh. Never rejects.
   */
  drop(agent: string, name: string, code: number, reason: string): Promise<void> {
    const key = `${agent}/${name}`;
    const instance = this.#live.get(key);
    if (instance === undefined) return Promise.resolve();
    let dropping = this.#dropping.get(key);
    if (dropping === undefined) {
      dropping = instance
        .drain(code, reason, 1_000)
        .then(() => {
          if (this.#live.get(key) === instance) this.#evict(instance);
        })
        .catch((error: unknown) =>
          this.logger.error({ err: error, agent, instance: name }, "agent not dropped cleanly"),
        )
        .finally(() => this.#dropping.delete(key));
      this.#dropping.set(key, dropping);
    }
    return dropping;
  }

  #evict(instance: AgentInstance): void {
    this.#cancelIdle(instance.key);
    this.#live.delete(instance.key);
    instance.close();
    this.#options.storage?.released(instance.agentName, instance.name);
    this.logger.debug({ agent: instance.agentName, instance: instance.name }, "agent evicted");
  }

  async #start(agent: string, name: string, key: string): Promise<AgentInstance> {
    const agentClass = this.#options.agents.get(agent);
    if (agentClass === undefined) throw new Error(`unknown agent ${agent}`);
    let instance: AgentInstance | undefined;
    const path = this.databasePath(agent, name);
    try {
      // The directory is made now, so an unusable data directory fails the start (and
      // is retried like a failing onStart) instead of the first write.
      mkdirSync(dirname(path), { recursive: true });
      // Databases are created on first write: a request the agent does not handle, or a
      // visit that reads nothing, leaves no file behind.
      const storage = await this.#options.storage?.prepare(agent, name, path);
      instance = new AgentInstance({
        agentName: agent,
        name,
        agentClass,
        database: storage ?? {
          open: () => new AgentDatabase(path, this.#options.durability),
          exists: () => existsSync(path),
        },
        host: this,
      });
      // Before onStart, so getAgentByName() from onStart finds this server first.
      recordHost(instance.agent, this);
      await instance.start();
    } catch (error) {
      this.#starting.delete(key);
      instance?.close();
      this.logger.error({ err: error, agent, instance: name }, "agent failed to start");
      throw error;
    }
    this.#starting.delete(key);
    if (this.#closed) {
      instance.close();
      throw new Error("server is shutting down");
    }
    this.#live.set(key, instance);
    this.logger.debug({ agent, instance: name }, "agent started");
    return instance;
  }

  /** Where an instance's database lives: one file per instance, name made filesystem-safe. */
  databasePath(agent: string, name: string): string {
    // `~` starts the hashed names below; a short name must not be able to spell one.
    const encoded = encodeURIComponent(name).replace(/^~/, "%7E");
    const file =
      encoded.length <= 180
        ? encoded
        : `~${createHash("sha256").update(name).digest("hex").slice(0, 40)}`;
    return join(this.#options.dataDir, agent, `${file}.sqlite`);
  }

  /** A caller got an instance but did not use it (e.g. the socket went away meanwhile). */
  release(instance: AgentInstance): void {
    if (instance.idle) this.onIdle(instance);
  }

  onIdle(instance: AgentInstance): void {
    if (this.#closed || this.#live.get(instance.key) !== instance) return;
    this.#cancelIdle(instance.key);
    const timer = setTimeout(() => {
      this.#idleTimers.delete(instance.key);
      if (!instance.idle || this.#live.get(instance.key) !== instance) return;
      this.#evict(instance);
    }, this.#options.idleTimeout);
    timer.unref();
    this.#idleTimers.set(instance.key, timer);
  }

  #cancelIdle(key: string): void {
    const timer = this.#idleTimers.get(key);
    if (timer !== undefined) clearTimeout(timer);
    this.#idleTimers.delete(key);
  }

  onDestroy(instance: AgentInstance): void {
    const key = instance.key;
    if (this.#live.get(key) === instance) this.#live.delete(key);
    this.#cancelIdle(key);
    instance.close();
    if (!this.#closed) this.#wakeups.set(instance.agentName, instance.name, undefined);
    // The -wal and -shm files hold committed data too: all three go.
    const path = this.databasePath(instance.agentName, instance.name);
    for (const file of [path, `${path}-wal`, `${path}-shm`]) rmSync(file, { force: true });
    this.#options.storage?.destroyed?.(instance.agentName, instance.name);
    this.logger.info({ agent: instance.agentName, instance: instance.name }, "agent destroyed");
  }

  onNextWakeup(instance: AgentInstance, time: number | undefined): void {
    if (this.#closed) return;
    if (this.#options.storage?.wakeup !== undefined) {
      this.#options.storage.wakeup(instance.agentName, instance.name, time);
      return;
    }
    this.#wakeups.set(instance.agentName, instance.name, time);
    this.#armWakeups();
  }

  /** One timer for the earliest schedule of any instance that is not in memory. */
  #armWakeups(): void {
    if (this.#wakeupTimer !== undefined) clearTimeout(this.#wakeupTimer);
    this.#wakeupTimer = undefined;
    const earliest = this.#wakeups.earliest();
    if (earliest === undefined || this.#closed) return;
    // A due row of a live instance is that instance's own timer's job; look again later.
    const delay = Math.min(Math.max(earliest - Date.now(), 0), 2 ** 31 - 1);
    this.#wakeupTimer = setTimeout(() => this.#wake(), Math.max(delay, 50));
    this.#wakeupTimer.unref();
  }

  #wake(): void {
    this.#wakeupTimer = undefined;
    let pending = false;
    for (const due of this.#wakeups.due(Date.now())) {
      if (!this.#options.agents.has(due.agent)) continue;
      if (this.#live.has(`${due.agent}/${due.name}`)) {
        pending = true;
        continue;
      }
      this.get(due.agent, due.name).then(
        (instance) => this.release(instance),
        () => {
          // Logged by #start; the row stays and is retried on the next wake.
        },
      );
      pending = true;
    }
    if (pending) {
      this.#wakeupTimer = setTimeout(() => this.#armWakeups(), 1000);
      this.#wakeupTimer.unref();
    } else {
      this.#armWakeups();
    }
  }

  /** Evict everything and close every database. */
  async close(): Promise<void> {
    this.#closed = true;
    removeHost(this);
    if (this.#wakeupTimer !== undefined) clearTimeout(this.#wakeupTimer);
    for (const timer of this.#idleTimers.values()) clearTimeout(timer);
    this.#idleTimers.clear();
    await Promise.allSettled(this.#starting.values());
    for (const instance of this.#live.values()) instance.close();
    this.#live.clear();
    this.#wakeups.close();
  }
}

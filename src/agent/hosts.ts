import type { Agent, AgentClass } from "./agent.js";
import type { AgentInstance } from "./instance.js";
import { processWide } from "./shared.js";

/** What server-side calls need from a registry: its URL names and its instances. */
export interface AgentHost {
  /** The URL name this host serves `agentClass` under, or `undefined`. */
  urlNameOf(agentClass: AgentClass): string | undefined;
  /** Get or start an instance; resolves after its `onStart` has finished. */
  get(agent: string, name: string): Promise<AgentInstance>;
  /** A caller got an instance for a moment and is done with it. */
  release(instance: AgentInstance): void;
  /**
   * Cluster mode: when another node owns `agent/name`, how to reach it there; `undefined`
   * when the instance is (or may be started) here.
   */
  locate?(agent: string, name: string): Promise<RemoteAgent | undefined>;
}

/** An instance on another node of the cluster, for server-side calls. */
export interface RemoteAgent {
  /** Call a `@callable()` there; rejects with the message a client would get. */
  call(method: string, args: unknown[]): Promise<unknown>;
  /** A request to its `onRequest`. */
  fetch(request: Request): Promise<Response>;
}

/**
 * The live registries of this process, and which one hosts each agent object, so server
 * code can reach an instance by class and name (`getAgentByName`) the way Cloudflare code
 * reaches it through a namespace binding. Process-wide, like the registries themselves.
 */
const hosts = processWide("hosts", () => ({
  live: new Set<AgentHost>(),
  byAgent: new WeakMap<Agent<unknown, unknown>, AgentHost>(),
}));

/** @internal A registry started serving. */
export function addHost(host: AgentHost): void {
  hosts.live.add(host);
}

/** @internal A registry closed. */
export function removeHost(host: AgentHost): void {
  hosts.live.delete(host);
}

/** @internal `agent` lives in `host`. */
export function recordHost(agent: Agent<unknown, unknown>, host: AgentHost): void {
  hosts.byAgent.set(agent, host);
}

/**
 * The host of `agentClass` for a call made by `caller` (the agent whose code is running, if
 * any): the caller's own server when it serves the class, else the only running server
 * that does. Throws when none does, or when several do and nothing says which.
 */
export function hostFor(
  agentClass: AgentClass,
  caller: Agent<unknown, unknown> | undefined,
): { host: AgentHost; urlName: string } {
  const own = caller === undefined ? undefined : hosts.byAgent.get(caller);
  const ownName = own?.urlNameOf(agentClass);
  if (own !== undefined && ownName !== undefined && hosts.live.has(own)) {
    return { host: own, urlName: ownName };
  }
  const found: Array<{ host: AgentHost; urlName: string }> = [];
  for (const host of hosts.live) {
    const urlName = host.urlNameOf(agentClass);
    if (urlName !== undefined) found.push({ host, urlName });
  }
  const label = agentClass.name || "this agent class";
  if (found.length === 0) {
    throw new Error(`getAgentByName(): ${label} is not served by a running server in this process`);
  }
  if (found.length > 1) {
    throw new Error(
      `getAgentByName(): ${label} is served by ${found.length} servers in this process; call it from code of an agent on the one you mean`,
    );
  }
  return found[0]!;
}

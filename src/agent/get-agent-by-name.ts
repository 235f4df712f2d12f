import { AgentCallError } from "../client/errors.js";
import type { Agent, AgentClass, AgentContext } from "./agent.js";
import { findCallable } from "./callable.js";
import { getCurrentAgent, runWithAgent } from "./context.js";
import { hostFor, type RemoteAgent } from "./hosts.js";
import { type AgentInstance, publicMessage } from "./instance.js";

type AnyFunction = (...args: never[]) => unknown;

/**
 * What `getAgentByName` returns: each method of the agent, called as a client would call it
 * (`@callable()` methods only, arguments and result passed as JSON, always a promise), and
 * `fetch(request)` for its `onRequest`.
 */
export type AgentByNameStub<T> = {
  [K in Exclude<keyof T, keyof Agent | "fetch"> as T[K] extends AnyFunction
    ? K
    : never]: T[K] extends (...args: infer Args) => infer Result
    ? (...args: Args) => Promise<Awaited<Result>>
    : never;
} & {
  /** Plain HTTP to the instance's `onRequest`, without the server's auth or routing. */
  fetch(request: Request): Promise<Response>;
};

/** Names runtimes probe on any object (a promise resolution looks for `then`). */
const PROBED = new Set(["then", "catch", "finally", "toJSON", "constructor", "prototype"]);

/**
 * A stub for the instance `name` of `agentClass` on the server in this process that serves
 * it, once its `onStart` has finished — from another agent, a schedule or a plain HTTP
 * handler. Where Cloudflare takes a namespace binding (`env.MyAgent`), Outpost takes the
 * class. A call reaches the agent's `@callable()` methods without a socket and fails as a
 * client's call would: an `AgentCallError` with code `remote_error` and the message a client
 * would get (`Method x is not callable`, the thrown error's message, never a stack). It is
 * trusted server code: no token is checked.
 *
 * @example
 * const room = await getAgentByName(ChatRoom, "lobby");
 * await room.post("system", "maintenance at noon");
 */
// biome-ignore lint/suspicious/noExplicitAny: any agent class, whatever its Env and State.
export async function getAgentByName<T extends Agent<any, any>>(
  agentClass: new (ctx: AgentContext, env: never) => T,
  name: string,
): Promise<AgentByNameStub<T>> {
  if (typeof name !== "string" || name === "") {
    throw new TypeError("getAgentByName(): `name` must be a non-empty string");
  }
  const { host, urlName } = hostFor(agentClass as unknown as AgentClass, getCurrentAgent().agent);
  // Resolve only once the instance has started, as the SDK does; it may be evicted
  // afterwards, so every call asks the host again.
  // In cluster mode the instance may live on another node: the call goes to its owner.
  if ((await host.locate?.(urlName, name)) === undefined) {
    host.release(await host.get(urlName, name));
  }
  const withInstance = async <R>(
    local: (instance: AgentInstance) => Promise<R>,
    remote: (agent: RemoteAgent) => Promise<R>,
  ): Promise<R> => {
    const elsewhere = await host.locate?.(urlName, name);
    if (elsewhere !== undefined) return remote(elsewhere);
    const instance = await host.get(urlName, name);
    return instance.track(() => local(instance));
  };
  return new Proxy({} as AgentByNameStub<T>, {
    get(_target, property) {
      if (typeof property !== "string" || PROBED.has(property)) return undefined;
      if (property === "fetch") {
        return (request: Request) =>
          withInstance(
            (instance) => instance.fetch(request),
            (agent) => agent.fetch(request),
          );
      }
      return (...args: unknown[]) =>
        withInstance(
          (instance) => callOnInstance(instance, property, args),
          async (agent) =>
            roundTrip(
              await agent.call(property, roundTrip(args, property, "Arguments") as unknown[]),
              property,
              "Result",
            ),
        );
    },
  });
}

/**
 * One call, checked and answered as the RPC dispatcher answers a client's. Also what the
 * owner runs for a call another node relays in cluster mode.
 */
export async function callOnInstance(
  instance: AgentInstance,
  method: string,
  args: unknown[],
): Promise<unknown> {
  const found = findCallable(instance.agent, method);
  if (found === undefined) {
    throw new AgentCallError("remote_error", method, `Method ${method} is not callable`);
  }
  if (found.metadata.streaming) {
    throw new AgentCallError(
      "remote_error",
      method,
      `Method ${method} streams; call it from a client with stream callbacks`,
    );
  }
  // Through JSON both ways, as over a socket: neither side can reach the other's objects.
  const copied = roundTrip(args, method, "Arguments");
  let result: unknown;
  try {
    result = await runWithAgent({ agent: instance.agent, connection: undefined }, () =>
      found.method.apply(instance.agent, copied as unknown[]),
    );
  } catch (error) {
    instance.reportError(undefined, error);
    throw new AgentCallError("remote_error", method, publicMessage(error));
  }
  return roundTrip(result, method, "Result");
}

function roundTrip(value: unknown, method: string, what: string): unknown {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    text = undefined;
  }
  if (text === undefined && value !== undefined) {
    throw new AgentCallError("remote_error", method, `${what} of ${method} is not serializable`);
  }
  return text === undefined ? undefined : JSON.parse(text);
}

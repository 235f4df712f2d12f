import type { Logger } from "pino";
import type { AgentClass } from "../agent/agent.js";
import type { HeaderReader } from "../auth/policy.js";
import { agentNameToKebab } from "../protocol/frames.js";
import { instanceNameProblem, type Route } from "./router.js";

/** What a `route` function is given: the request's address and headers, never its body. */
export interface RouteRequest {
  /** The full request URL, query included (it may carry a credential: keep it out of logs). */
  url: URL;
  headers: HeaderReader;
  /** The client's address, as the failed-attempt limit sees it; `undefined` when unknown. */
  remoteAddress: string | undefined;
  /** True for a WebSocket upgrade, false for plain HTTP. */
  websocket: boolean;
}

/** Where a `route` function sends a request: one instance of one of the server's agents. */
export interface AgentRoute {
  /** The agent: its class, its class name (`"UserAgent"`) or its URL name (`"user-agent"`). */
  agent: AgentClass | string;
  /** The instance name, as is (not URL-encoded). */
  name: string;
}

/**
 * Addresses of your own for agents, next to `/<prefix>/<agent>/<name>`: what a client with
 * `basePath` connects to. Return where the request goes, or nothing to leave it alone.
 */
export type RouteFunction = (
  request: RouteRequest,
) => AgentRoute | null | undefined | Promise<AgentRoute | null | undefined>;

/**
 * Runs the server's `route` option for upgrades and requests outside the prefix and checks
 * its answer. What it picks then takes the same road as any other address: the credentials
 * are checked against the instance it names, so a route can choose an instance but never
 * grant access to one. A route that throws or answers nonsense is a bug in the server's
 * code: it is logged (once per kind of mistake) and the client gets a plain internal error.
 */
export class CustomRoutes {
  readonly #route: RouteFunction;
  /** URL name by class, class name and URL name. */
  readonly #names = new Map<AgentClass | string, string>();
  readonly #logger: Logger;
  readonly #logged = new Set<string>();

  constructor(route: RouteFunction, agents: ReadonlyMap<string, AgentClass>, logger: Logger) {
    this.#route = route;
    this.#logger = logger;
    for (const [urlName, agentClass] of agents) {
      this.#names.set(urlName, urlName);
      this.#names.set(agentClass, urlName);
      this.#names.set(agentClass.name, urlName);
    }
  }

  /** The route for `request`, or `undefined` when the function leaves it alone. */
  async resolve(request: RouteRequest): Promise<Route | undefined> {
    let answer: AgentRoute | null | undefined;
    try {
      answer = await this.#route(request);
    } catch (error) {
      this.#mistake("threw", { err: error }, "the server's route() threw");
      return { kind: "route-failed" };
    }
    if (answer === undefined || answer === null) return undefined;
    const agent =
      typeof answer !== "object"
        ? undefined
        : (this.#names.get(answer.agent) ??
          (typeof answer.agent === "string"
            ? this.#names.get(agentNameToKebab(answer.agent))
            : undefined));
    if (agent === undefined) {
      const asked = typeof answer === "object" ? answer.agent : answer;
      const shown = typeof asked === "function" ? asked.name : String(asked).slice(0, 64);
      this.#mistake(
        `agent:${shown}`,
        { agents: [...new Set(this.#names.values())] },
        `the server's route() named an agent this server does not host: ${shown}`,
      );
      return { kind: "route-failed" };
    }
    const name = answer.name;
    if (typeof name !== "string") {
      this.#mistake("name", {}, "the server's route() gave an instance name that is not a string");
      return { kind: "route-failed" };
    }
    const problem = instanceNameProblem(name);
    if (problem !== undefined) return { kind: "bad-name", reason: problem };
    return { kind: "agent", agent, name, rest: "" };
  }

  #mistake(kind: string, fields: object, message: string): void {
    if (this.#logged.has(kind) || this.#logged.size >= 100) return;
    this.#logged.add(kind);
    this.#logger.error({ event: "route_failed", ...fields }, message);
  }
}

import { agentNameToKebab } from "../protocol/frames.js";

/** Longest instance name accepted, in characters after URL-decoding. */
export const MAX_INSTANCE_NAME_LENGTH = 128;

/** Where a request path leads. */
export type Route =
  | {
      kind: "agent";
      agent: string;
      name: string /** Path after the instance name. */;
      rest: string;
    }
  | { kind: "not-found" }
  /** Under the prefix, with an instance name, but no agent by that URL name. */
  | { kind: "unknown-agent"; agent: string }
  | { kind: "bad-name"; reason: string }
  /** The server's own `route` function failed (threw, or named no agent it hosts). */
  | { kind: "route-failed" };

/**
 * Maps `/<prefix>/<kebab-agent>/<instance>[/rest]` to a known agent class. Unknown agents
 * are `not-found` before any decoding or other work; instance names are URL-decoded and
 * must not be able to play path tricks anywhere they are used.
 */
export class Router {
  readonly #prefix: string;
  readonly #agents: ReadonlySet<string>;

  constructor(prefix: string, agents: Iterable<string>) {
    this.#prefix = `/${prefix.replace(/^\/+|\/+$/g, "")}/`;
    this.#agents = new Set(agents);
  }

  /** The URL names of the agents this router knows. */
  get agents(): string[] {
    return [...this.#agents];
  }

  match(pathname: string): Route {
    if (!pathname.startsWith(this.#prefix)) return { kind: "not-found" };
    const tail = pathname.slice(this.#prefix.length);
    const slash = tail.indexOf("/");
    if (slash <= 0) return { kind: "not-found" };
    const agent = tail.slice(0, slash);
    const afterAgent = tail.slice(slash + 1);
    if (!this.#agents.has(agent)) {
      return afterAgent === "" ? { kind: "not-found" } : { kind: "unknown-agent", agent };
    }
    const end = afterAgent.indexOf("/");
    const rawName = end === -1 ? afterAgent : afterAgent.slice(0, end);
    const rest = end === -1 ? "" : afterAgent.slice(end);
    const name = decodeInstanceName(rawName);
    if (typeof name !== "string") return { kind: "bad-name", reason: name.error };
    return { kind: "agent", agent, name, rest };
  }
}

/** URL-decode and validate an instance name. */
export function decodeInstanceName(raw: string): string | { error: string } {
  let name: string;
  try {
    name = decodeURIComponent(raw);
  } catch {
    return { error: "instance name is not valid URL encoding" };
  }
  const problem = instanceNameProblem(name);
  if (problem !== undefined) return { error: problem };
  return name;
}

/** Why `name` (already decoded) cannot be an instance name, or `undefined` when it can. */
export function instanceNameProblem(name: string): string | undefined {
  if (name.length === 0) return "instance name is empty";
  if (name.length > MAX_INSTANCE_NAME_LENGTH) {
    return `instance name is longer than ${MAX_INSTANCE_NAME_LENGTH} characters`;
  }
  if (name === "." || name === "..") return "instance name is not allowed";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point.
  if (/[/\\\u0000-\u001f\u007f]/.test(name)) return "instance name contains a forbidden character";
  return undefined;
}

/** Kebab-case URL names for a `{ ClassName: Class }` record, checking for clashes. */
export function agentUrlNames<T>(agents: Record<string, T>): Map<string, T> {
  const byName = new Map<string, T>();
  for (const [className, agentClass] of Object.entries(agents)) {
    const urlName = agentNameToKebab(className);
    if (byName.has(urlName)) throw new Error(`two agents map to /${urlName}: rename one of them`);
    byName.set(urlName, agentClass);
  }
  return byName;
}

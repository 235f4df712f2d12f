import type { KeySet } from "../auth/keys.js";
import { FULL_SCOPE } from "../auth/scope.js";
import { tokenAuth } from "../auth/token-auth.js";
import { agentNameToKebab } from "../protocol/frames.js";

/**
 * The URL name for an `--agent` value: a class name (`ChatRoom`) becomes its kebab-case
 * URL name (`chat-room`), which is what the server compares the claim with. Wildcards and
 * names already in URL form are kept.
 */
export function urlAgentName(agent: string): string {
  if (agent === "*" || !/[A-Z_]/.test(agent)) return agent;
  const wildcard = agent.endsWith("*");
  const kebab = agentNameToKebab(wildcard ? agent.slice(0, -1) : agent);
  return wildcard ? `${kebab}*` : kebab;
}

/** Scope names no server knows: a typo there silently grants nothing. */
export function unknownScopes(scope: string | undefined): string[] {
  if (scope === undefined) return [];
  const known: readonly string[] = FULL_SCOPE;
  return scope.split(" ").filter((s) => s !== "" && !known.includes(s));
}

/** A concrete agent or instance name that `pattern` covers, to try the token against. */
function sample(pattern: string): string {
  if (pattern === "*") return "any";
  return pattern.endsWith("*") ? `${pattern.slice(0, -1)}x` : pattern;
}

/**
 * Why a server running `tokenAuth({ keys })` with its default settings would refuse this
 * token for `agent`/`name`, or `undefined` when it would accept it. The check is the
 * server's own: the token is presented to a real policy, as a client's query would be.
 */
export async function defaultServerRefusal(
  keys: KeySet,
  token: string,
  agent: string,
  name: string,
): Promise<string | undefined> {
  const policy = tokenAuth({ keys, rateLimit: false });
  const url = new URL(`http://127.0.0.1/agents/${sample(agent)}/${sample(name)}`);
  url.searchParams.set("token", token);
  try {
    await policy.authenticate({
      agent: sample(agent),
      name: sample(name),
      url,
      headers: new Headers(),
      remoteAddress: "127.0.0.1",
      websocket: true,
    });
    return undefined;
  } catch (error) {
    const { code, closeCode, message } = error as {
      code?: string;
      closeCode?: number;
      message?: string;
    };
    return `${closeCode ?? "refused"} ${code ?? ""}: ${message ?? String(error)}`.trim();
  }
}

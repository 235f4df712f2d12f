export { dropCachedQuery } from "./query-cache.js";
export { type UseAgentOptions, type UseAgentResult, useAgent } from "./use-agent.js";

import type { Logger } from "pino";
import type { BackgroundHost } from "../../src/agent/background.js";
import { resolveRetry } from "../../src/agent/retry.js";

/**
 * A `BackgroundHost` with nothing of an instance around it, for schedules and queues driven
 * on their own: one attempt per callback, callbacks run straight on `agent`, no activity
 * tracking, failures already logged; `changed` as the test needs it.
 */
export function bareHost(
  agent: object,
  log: Logger,
  changed: () => void = () => {},
): BackgroundHost {
  return {
    agent,
    log,
    retryDefaults: resolveRetry({ maxAttempts: 1 }),
    track: (work) => work(),
    invoke: async (method, args) => method.apply(agent, args),
    failed: () => {},
    changed,
  };
}

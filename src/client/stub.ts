/** `stub.method(...args)` is `call("method", args)`. */
export type AgentStub = Record<string, (...args: unknown[]) => Promise<unknown>>;

/** Property names runtimes and test libraries probe on any object; never RPC methods. */
const PROBED_PROPERTIES = new Set([
  "then",
  "catch",
  "finally",
  "toJSON",
  "valueOf",
  "toString",
  "constructor",
  "prototype",
  "$$typeof",
  "@@toStringTag",
  "asymmetricMatch",
  "nodeType",
  "inspect",
]);

/** A stub whose every property (but the probed ones) is a function calling that method. */
export function createStub(call: (method: string, args: unknown[]) => Promise<unknown>): AgentStub {
  return new Proxy({} as AgentStub, {
    get: (_target, property) => {
      if (typeof property !== "string" || PROBED_PROPERTIES.has(property)) return undefined;
      return (...args: unknown[]) => call(property, args);
    },
  });
}

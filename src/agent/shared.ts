/**
 * One registry per process, even when two copies of Outpost are loaded (a bundler, a
 * TypeScript loader's module namespace, two installed versions): a class decorated by one
 * copy must still be hosted by the other.
 */
export function processWide<T>(name: string, create: () => T): T {
  const key = Symbol.for(`outpost.${name}`);
  const store = globalThis as unknown as Record<symbol, T | undefined>;
  let value = store[key];
  if (value === undefined) {
    value = create();
    store[key] = value;
  }
  return value;
}

/** Static brand on `Agent`, inherited by every subclass from any copy of Outpost. */
export const AGENT_BRAND: unique symbol = Symbol.for("outpost.Agent") as never;

/** A hook's or callable's result that must be waited for (a promise, or any thenable). */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
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

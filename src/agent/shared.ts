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

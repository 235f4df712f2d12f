import { processWide } from "./shared.js";

/** Options for `@callable()`. */
export interface CallableMetadata {
  /** Short description, for tooling. */
  description?: string;
  /**
   * The method streams its result: it receives a `StreamingResponse` as its first argument
   * and calls `send(chunk)` / `end(final)` on it.
   */
  streaming?: boolean;
}

const callables = processWide("callables", () => new WeakMap<Function, CallableMetadata>());

/**
 * Marks an agent method as callable by clients over RPC (TC39 standard decorator).
 * Methods without it cannot be called, whatever their name.
 *
 * @example
 * class Counter extends Agent<Env, { count: number }> {
 *   @callable()
 *   increment(by = 1) {
 *     this.setState({ count: this.state.count + by });
 *     return this.state.count;
 *   }
 * }
 */
export function callable(metadata: CallableMetadata = {}) {
  return function markCallable<This, Args extends unknown[], Return>(
    method: (this: This, ...args: Args) => Return,
    context: ClassMethodDecoratorContext<This, (this: This, ...args: Args) => Return>,
  ): void {
    if (context.kind !== "method" || context.static || context.private) {
      throw new TypeError("@callable() applies to public instance methods");
    }
    callables.set(method, { ...metadata });
  };
}

/**
 * The callable method `name` of `target` and its metadata, or `undefined`. Walks the
 * prototype chain by property descriptor so no getter runs and no inherited
 * `Object.prototype` member is ever reachable.
 */
export function findCallable(
  target: object,
  name: string,
): { method: Function; metadata: CallableMetadata } | undefined {
  let proto: object | null = Object.getPrototypeOf(target);
  while (proto !== null && proto !== Object.prototype) {
    const descriptor = Object.getOwnPropertyDescriptor(proto, name);
    if (descriptor !== undefined) {
      const method = descriptor.value;
      if (typeof method !== "function") return undefined;
      const metadata = callables.get(method);
      return metadata === undefined ? undefined : { method, metadata };
    }
    proto = Object.getPrototypeOf(proto);
  }
  return undefined;
}

/** The socket events `AgentClient` re-emits, with the payload each listener receives. */
export interface AgentClientEventMap {
  /** The server accepted the connection (identity and state received). */
  open: Event;
  /** Any frame from the server, protocol frames included (as partysocket dispatches them). */
  message: MessageEvent;
  /** The socket closed; the client may reconnect afterwards. */
  close: CloseEvent;
  /** The socket reported an error (partysocket reports it after the close it causes). */
  error: Event;
}

/** The type of an `AgentClient` event. */
export type AgentClientEventType = keyof AgentClientEventMap;

/** A function listener or an object with `handleEvent`, as `EventTarget` accepts. */
export type AgentClientListener<E> = ((event: E) => void) | { handleEvent(event: E): void };

/** `addEventListener`'s third argument: `EventTarget`'s options that make sense here. */
export interface AgentClientListenerOptions {
  /** Remove the listener after its first call. */
  once?: boolean;
  /** Remove the listener when this signal aborts. */
  signal?: AbortSignal;
}

type AnyListener = AgentClientListener<never>;

interface Entry {
  listener: AnyListener;
  once: boolean;
  /** Undoes the `abort` subscription, so a long-lived signal does not pin the listener. */
  unlink: (() => void) | undefined;
}

/**
 * Listener bookkeeping with `EventTarget`'s rules (one registration per type and listener,
 * `once`, `signal`, `handleEvent` objects, a throwing listener does not stop the others) but
 * no `Event` dispatch: a listener gets the socket's own event object, so nothing is copied
 * per frame, and no event class of one realm meets an `EventTarget` of another (jsdom under
 * Node).
 */
export class ClientEvents {
  readonly #listeners = new Map<string, Entry[]>();

  /** True when `type` has at least one listener; lets the caller skip building an event. */
  has(type: AgentClientEventType): boolean {
    return (this.#listeners.get(type)?.length ?? 0) > 0;
  }

  /** Any type is kept, as `EventTarget` does; only those of `AgentClientEventMap` fire. */
  add(
    type: string,
    listener: AnyListener | null | undefined,
    options?: boolean | AgentClientListenerOptions,
  ): void {
    if (listener === null || listener === undefined) return;
    const { once = false, signal } = typeof options === "object" ? options : {};
    if (signal?.aborted) return;
    const entries = this.#listeners.get(type) ?? [];
    if (entries.some((entry) => entry.listener === listener)) return;
    const entry: Entry = { listener, once, unlink: undefined };
    if (signal !== undefined) {
      const onAbort = () => this.remove(type, listener);
      signal.addEventListener("abort", onAbort, { once: true });
      entry.unlink = () => signal.removeEventListener("abort", onAbort);
    }
    entries.push(entry);
    this.#listeners.set(type, entries);
  }

  remove(type: string, listener: AnyListener | null | undefined): void {
    const entries = this.#listeners.get(type);
    const index = entries?.findIndex((entry) => entry.listener === listener) ?? -1;
    if (entries === undefined || index === -1) return;
    entries[index]!.unlink?.();
    // A new array, so a dispatch in progress keeps iterating the list it started with.
    const rest = entries.filter((_, at) => at !== index);
    if (rest.length === 0) this.#listeners.delete(type);
    else this.#listeners.set(type, rest);
  }

  emit<K extends AgentClientEventType>(type: K, event: AgentClientEventMap[K]): void {
    const entries = this.#listeners.get(type);
    if (entries === undefined) return;
    for (const entry of entries) {
      if (entry.once) this.remove(type, entry.listener);
      const listener = entry.listener as AgentClientListener<AgentClientEventMap[K]>;
      try {
        if (typeof listener === "function") listener(event);
        else listener.handleEvent(event);
      } catch (error) {
        // Like `EventTarget`: report it, but let the other listeners and the client go on.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}

/**
 * A close event for listeners: the socket's own when it has `code` (browsers, `ws`),
 * otherwise a plain `Event` carrying `code`, `reason` and `wasClean`, since Node 20 has no
 * global `CloseEvent`.
 */
export function closeEvent(source: unknown, code: number, reason: string): CloseEvent {
  if (typeof source === "object" && source !== null && "code" in source) {
    return source as CloseEvent;
  }
  return Object.assign(new Event("close"), {
    code,
    reason,
    wasClean: code === 1000,
  }) as unknown as CloseEvent;
}

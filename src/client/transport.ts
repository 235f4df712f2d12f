import ReconnectingWebSocket, { type Message } from "partysocket/ws";
import { type HandshakeFailure, observeErrors, readHandshakeFailure } from "./handshake-failure.js";
import { MAX_TIMER } from "./timers.js";

/** A WebSocket class: the browser's, or e.g. the `ws` package's in Node. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => object;

/** Returned to partysocket after the client stopped; partysocket drops it unused. */
const UNUSED_URL = "ws://127.0.0.1:9/";

/**
 * partysocket re-dispatches every event of the socket as a copy; the client reads them
 * through the `on*` handlers instead, which partysocket calls first with the original.
 * Skipping the copy saves an allocation per frame, and avoids a crash where the event
 * classes of two realms meet (jsdom's `Event` on Node's `EventTarget` in component tests).
 */
class QuietSocket extends ReconnectingWebSocket {
  override dispatchEvent(_event: Event): boolean {
    return true;
  }
}

/** Options of a `Transport`. */
export interface TransportOptions {
  /** The WebSocket class, asked for each socket: a global one defined later is still found. */
  webSocket: () => WebSocketConstructor | undefined;
  /** Milliseconds for a socket to open. */
  connectionTimeout: number;
  /** Do not open a socket until `reconnect()`. */
  startClosed: boolean;
}

/** What the transport asks of the client that drives it. */
export interface TransportHandlers {
  /**
   * The URL of the next attempt, after whatever wait the client wants (see `sleep`), or
   * `undefined` when the client stopped meanwhile.
   */
  url(): Promise<string | undefined>;
  /** The socket opened (the server has not accepted anything yet). */
  open(): void;
  message(event: MessageEvent): void;
  error(event: Event): void;
  /**
   * The socket closed; `failure` is what its handshake's `error` event said, if it failed.
   * Returns whether to open another socket.
   */
  close(event: { code: number; reason?: string }, failure: HandshakeFailure | undefined): boolean;
}

/**
 * The socket under an `AgentClient`, one after another. partysocket owns each socket's
 * life: opening, the connect timeout, listener hygiene. Its delays are zeroed because the
 * client's URL provider does the waiting: partysocket's backoff has no jitter, cannot wait
 * the time a 4008 asks for, and it would flush queued frames on a bare socket open —
 * before the server has accepted the credentials.
 */
export class Transport {
  readonly #socket: ReconnectingWebSocket;
  /** What the current socket's `error` event said, read before partysocket's close. */
  #handshakeFailure: HandshakeFailure | undefined;
  #wake: (() => void) | undefined;

  constructor(options: TransportOptions, handlers: TransportHandlers) {
    this.#socket = new QuietSocket(() => this.#nextUrl(handlers), undefined, {
      WebSocket: observeErrors(options.webSocket, (event) => {
        this.#handshakeFailure = readHandshakeFailure(event);
      }),
      minReconnectionDelay: 0,
      maxReconnectionDelay: 0,
      connectionTimeout: options.connectionTimeout,
      maxEnqueuedMessages: 0,
      startClosed: options.startClosed,
      shouldReconnectOnClose: (event) => {
        const failure = this.#handshakeFailure;
        this.#handshakeFailure = undefined;
        return handlers.close(event, failure);
      },
    });
    this.#socket.onopen = () => handlers.open();
    this.#socket.onmessage = (event) => handlers.message(event);
    this.#socket.onerror = (event) => handlers.error(event as Event);
  }

  /** Send on the current socket; `false` when it is not open. */
  send(text: Message): boolean {
    return this.#socket.send(text);
  }

  /** Close the current socket and open no other until `reconnect()`. */
  close(code?: number, reason?: string): void {
    this.#socket.close(code, reason);
  }

  /** Drop the current socket, if any, and open a new one. */
  reconnect(code?: number, reason?: string): void {
    this.#socket.reconnect(code, reason);
  }

  /** A wait that `wake()` cuts short. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        if (this.#wake === wake) this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(wake, Math.min(ms, MAX_TIMER));
      this.#wake = wake;
    });
  }

  /** End the current `sleep` now (`close()` and `reconnect()` do not wait out a backoff). */
  wake(): void {
    this.#wake?.();
  }

  async #nextUrl(handlers: TransportHandlers): Promise<string> {
    const url = await handlers.url();
    if (url === undefined) return UNUSED_URL;
    this.#handshakeFailure = undefined;
    return url;
  }
}

import type { Message } from "partysocket/ws";
import { FrameType } from "../protocol/frames.js";
import { readTokenTimes, refreshTime } from "./jwt.js";
import type { QueryReason } from "./query.js";
import { MAX_TIMER } from "./timers.js";
import type { QueryParams } from "./url.js";

/** In-band token refresh settings. */
export interface RefreshOptions {
  /** Fraction of the token's life after which a new one is fetched. Default 0.8. */
  at?: number;
  /** Milliseconds to wait for the server's `outpost_auth_result`. Default 5000. */
  timeout?: number;
}

/** What the refresh needs from the client it serves. */
export interface RefreshHost {
  /** Run the app's `query`. */
  query(reason: QueryReason): Promise<QueryParams>;
  /** Send a frame on the accepted connection; `false` when there is none. */
  send(text: Message): boolean;
  /** True while the server has accepted the connection. */
  isOpen(): boolean;
}

type AuthResult = { ok: boolean; code?: string };

/**
 * Keeps the token of an open connection fresh: at `at` of its life it runs `query` with
 * reason `refresh` and hands the new token to the server in an `outpost_auth` frame.
 */
export class TokenRefresh {
  readonly #enabled: boolean;
  readonly #at: number;
  readonly #timeout: number;
  readonly #host: RefreshHost;

  /** Token the current connection was opened or last refreshed with. */
  #token: string | undefined;
  #tokenReceivedAt = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #waiter: ((frame: AuthResult | undefined) => void) | undefined;
  /** Counts connections, so a refresh that outlives its connection does nothing. */
  #connection = 0;

  constructor(options: RefreshOptions | false | undefined, host: RefreshHost) {
    const refresh = options === false ? {} : (options ?? {});
    this.#enabled = options !== false;
    this.#at = refresh.at ?? 0.8;
    this.#timeout = refresh.timeout ?? 5000;
    this.#host = host;
  }

  /** The next connection is opened with these query parameters (`token`, if any). */
  use(query: QueryParams): void {
    this.#token = typeof query.token === "string" ? query.token : undefined;
    this.#tokenReceivedAt = Date.now();
  }

  /** The server accepted a connection: plan the refresh of its token. */
  start(): void {
    this.#connection++;
    this.#schedule();
  }

  /** The server's `outpost_auth_result`. */
  answer(result: AuthResult): void {
    this.#waiter?.(result);
  }

  /** The connection ended: no refresh for it, and a refresh waiting for an answer gives up. */
  stop(): void {
    clearTimeout(this.#timer);
    this.#waiter?.(undefined);
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    if (!this.#enabled || this.#token === undefined) return;
    const times = readTokenTimes(this.#token);
    if (times === undefined) return;
    const at = refreshTime(times, this.#tokenReceivedAt, this.#at);
    const connection = this.#connection;
    this.#timer = setTimeout(
      () => void this.#refresh(connection, times.expiresAt),
      Math.min(Math.max(0, at - Date.now()), MAX_TIMER),
    );
  }

  /**
   * Fetch a fresh token and hand it to the server over the open connection. Whatever goes
   * wrong, the connection is left alone: if the server enforces expiry it closes 4001
   * later, and that close is answered with fresh credentials like any other.
   */
  async #refresh(connection: number, expiresAt: number): Promise<void> {
    const current = () => this.#connection === connection && this.#host.isOpen();
    let token: unknown;
    try {
      token = (await this.#host.query("refresh")).token;
    } catch {
      token = undefined;
    }
    if (!current()) return;
    if (typeof token !== "string" || token === "" || token === this.#token) {
      // No new token yet (e.g. a cached one): try again halfway to expiry while there is time.
      const left = expiresAt - Date.now();
      if (left > 2000)
        this.#timer = setTimeout(() => void this.#refresh(connection, expiresAt), left / 2);
      return;
    }
    const answer = new Promise<AuthResult | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), this.#timeout);
      this.#waiter = (frame) => {
        clearTimeout(timer);
        this.#waiter = undefined;
        resolve(frame);
      };
    });
    if (!this.#host.send(JSON.stringify({ type: FrameType.Auth, token }))) return;
    const result = await answer;
    if (!current() || result === undefined || !result.ok) return;
    this.#token = token;
    this.#tokenReceivedAt = Date.now();
    this.#schedule();
  }
}

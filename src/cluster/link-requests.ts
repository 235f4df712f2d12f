/**
 * Requests a link sent and is waiting on: ids, timeouts, and what happens to them when the
 * reply, the timeout or the end of the link comes first. No I/O here.
 */
import { LinkError } from "./link-errors.js";
import type { LinkReply } from "./link-options.js";

interface Pending {
  resolve(reply: LinkReply): void;
  reject(error: LinkError): void;
  timer: NodeJS.Timeout;
}

export class PendingRequests {
  #pending = new Map<number, Pending>();
  #last = 0;

  get size(): number {
    return this.#pending.size;
  }

  /** The id the next request will carry (u32, wrapping). */
  nextId(): number {
    this.#last = (this.#last + 1) >>> 0;
    return this.#last;
  }

  /** Wait for the reply to `id`; rejects `ERR_LINK_REQUEST_TIMEOUT` after `timeoutMs`. */
  wait(id: number, timeoutMs: number): Promise<LinkReply> {
    return new Promise<LinkReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new LinkError("ERR_LINK_REQUEST_TIMEOUT"));
      }, timeoutMs);
      timer.unref();
      this.#pending.set(id, { resolve, reject, timer });
    });
  }

  /** The reply (or failure) for `id` arrived; a late one, after the timeout, is dropped. */
  settle(id: number, outcome: LinkReply | LinkError): void {
    const pending = this.#pending.get(id);
    if (pending === undefined) return;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    if (outcome instanceof LinkError) pending.reject(outcome);
    else pending.resolve(outcome);
  }

  /** The link ended: every request still waiting rejects with `error`. */
  rejectAll(error: () => LinkError): void {
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(error());
    }
    this.#pending.clear();
  }
}

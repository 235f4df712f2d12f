import type { Connection } from "../agent/connection.js";
import { type ChatResponseFrame, MessageType } from "./protocol.js";
import type { StreamLog } from "./stream-log.js";

/**
 * The stream-resume handshake of the official chat protocol: offering the running answer
 * (`cf_agent_stream_resuming`), answering probes (`_resume_request` → `_resuming`,
 * `_pending` or `_resume_none`), and replaying on `_resume_ack`. It also holds who must not
 * get live chunks yet: a client offered an answer gets them only after its replay, or it
 * would apply them twice.
 */
export class ResumeHandshake {
  /** Offered an answer, not yet acknowledged: left out of live broadcasts. */
  readonly awaitingAck = new Set<string>();
  /** A continuation asked for but not started, and who waits to be offered it. */
  #pending: { requestId: string; waiting: Map<string, string | undefined> } | undefined;
  readonly #log: StreamLog;
  readonly #connection: (id: string) => Connection | undefined;

  constructor(log: StreamLog, connection: (id: string) => Connection | undefined) {
    this.#log = log;
    this.#connection = connection;
  }

  /** A continuation `requestId` will follow; `ownerId` (who asked for it) is offered it. */
  expect(requestId: string, ownerId: string): void {
    this.#pending = { requestId, waiting: new Map([[ownerId, undefined]]) };
  }

  /** The connection closed. */
  forget(connectionId: string): void {
    this.awaitingAck.delete(connectionId);
    this.#pending?.waiting.delete(connectionId);
  }

  /** The chat was cleared: nothing is left to resume. */
  clear(): void {
    this.awaitingAck.clear();
  }

  /** Connections a live broadcast leaves out: `exclude` and those awaiting their replay. */
  without(exclude: readonly string[]): readonly string[] {
    return this.awaitingAck.size === 0 ? exclude : [...exclude, ...this.awaitingAck];
  }

  /** Offer `connection` the running answer, if any; it gets no live chunks until it acknowledges. */
  offer(connection: Connection, probeId: string | undefined): boolean {
    const active = this.#log.active;
    if (active === undefined) return false;
    const sent = connection.send(
      JSON.stringify({
        type: MessageType.CF_AGENT_STREAM_RESUMING,
        id: active.requestId,
        ...(probeId !== undefined && { probeId }),
      }),
    );
    if (sent) this.awaitingAck.add(connection.id);
    return sent;
  }

  /** `cf_agent_stream_resume_request`: the running answer, a pending continuation, or none. */
  request(connection: Connection, probeId: string | undefined): void {
    const pending = this.#pending;
    if (pending !== undefined) {
      pending.waiting.set(connection.id, probeId ?? pending.waiting.get(connection.id));
      connection.send(
        JSON.stringify({
          type: MessageType.CF_AGENT_STREAM_PENDING,
          id: pending.requestId,
          ...(probeId !== undefined && { probeId }),
        }),
      );
      return;
    }
    if (this.offer(connection, probeId)) return;
    connection.send(
      JSON.stringify({
        type: MessageType.CF_AGENT_STREAM_RESUME_NONE,
        reason: "idle",
        ...(probeId !== undefined && { probeId }),
      }),
    );
  }

  /**
   * The client is ready for the answer it was offered: every chunk so far, marked as
   * replays with their live `seq`, then `replayComplete` (still streaming: live chunks
   * follow) or the terminal frame (it ended meanwhile).
   */
  ack(connection: Connection, requestId: string): void {
    this.awaitingAck.delete(connection.id);
    const stored = this.#log.find(requestId);
    if (stored === undefined) {
      connection.send(
        JSON.stringify({
          type: MessageType.CF_AGENT_USE_CHAT_RESPONSE,
          id: requestId,
          body: "",
          done: true,
          replay: true,
        } satisfies ChatResponseFrame),
      );
      return;
    }
    const flag = stored.continuation ? { continuation: true } : {};
    this.#log.chunks(requestId).forEach((body, seq) => {
      connection.send(
        JSON.stringify({
          type: MessageType.CF_AGENT_USE_CHAT_RESPONSE,
          id: requestId,
          body,
          done: false,
          replay: true,
          seq,
          ...flag,
        } satisfies ChatResponseFrame),
      );
    });
    const live = this.#log.active?.requestId === requestId;
    const outcome = stored.status === "streaming" ? "aborted" : stored.status;
    connection.send(
      JSON.stringify({
        type: MessageType.CF_AGENT_USE_CHAT_RESPONSE,
        id: requestId,
        body: "",
        done: !live,
        replay: true,
        ...(live ? { replayComplete: true } : { outcome }),
        ...flag,
        ...(!live && stored.originIds !== undefined && { messageIds: stored.originIds }),
      } satisfies ChatResponseFrame),
    );
  }

  /** The continuation started: everyone who asked to resume it is offered it now. */
  started(requestId: string): void {
    const pending = this.#pending;
    if (pending?.requestId !== requestId) return;
    this.#pending = undefined;
    for (const [id, probeId] of pending.waiting) {
      const connection = this.#connection(id);
      if (connection !== undefined) this.offer(connection, probeId);
    }
  }

  /** The continuation will not stream: whoever waits for it is told there is nothing. */
  settled(requestId: string): void {
    const pending = this.#pending;
    if (pending?.requestId !== requestId) return;
    this.#pending = undefined;
    for (const [id, probeId] of pending.waiting) {
      this.#connection(id)?.send(
        JSON.stringify({
          type: MessageType.CF_AGENT_STREAM_RESUME_NONE,
          reason: "idle",
          ...(probeId !== undefined && { probeId }),
        }),
      );
    }
  }
}

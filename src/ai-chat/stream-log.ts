import type { Sql } from "./message-store.js";

/** Chunks buffered before they are written, and the longest one waits. */
const FLUSH_CHUNKS = 32;
const FLUSH_MS = 100;

/** How a stored stream ended; `streaming` while it runs (or when the process died). */
export type StreamStatus = "streaming" | "completed" | "error" | "aborted";

/** One answer's stream as stored. */
export interface StoredStream {
  requestId: string;
  messageId: string;
  continuation: boolean;
  status: StreamStatus;
  /** Ids of the user messages the request carried, for the terminal frame. */
  originIds: string[] | undefined;
}

interface StreamRow {
  request_id: string;
  message_id: string;
  continuation: number;
  status: StreamStatus;
  origin_ids: string | null;
}

/**
 * Every chunk of the current answer, written to SQLite as it is sent. A client that
 * reconnects mid-answer is replayed the chunks it missed with the same `seq` they carried
 * live; a process that dies mid-answer leaves the chunks behind, and the next start turns
 * them into the partial message. Only the latest answer is kept: an older one has been
 * persisted as a message already.
 *
 * Chunks are written in batches (every `FLUSH_CHUNKS` chunks or `FLUSH_MS`, one transaction
 * each): a commit per chunk would make the disk, not the model, set the pace. Replays of the
 * running answer read its chunks from memory, so a batch not yet written is never missed; a
 * process killed outright loses at most the last batch of the partial answer.
 */
export class StreamLog {
  readonly #sql: Sql;
  #active: (StoredStream & { nextSeq: number; bodies: string[]; written: number }) | undefined;
  #flushTimer: NodeJS.Timeout | undefined;

  constructor(sql: Sql) {
    this.#sql = sql;
    this.#sql`CREATE TABLE IF NOT EXISTS _outpost_chat_streams (
      request_id TEXT PRIMARY KEY,
      message_id TEXT NOT NULL,
      continuation INTEGER NOT NULL,
      status TEXT NOT NULL,
      origin_ids TEXT
    )`;
    this.#sql`CREATE TABLE IF NOT EXISTS _outpost_chat_chunks (
      request_id TEXT NOT NULL,
      seq INTEGER NOT NULL,
      body TEXT NOT NULL,
      PRIMARY KEY (request_id, seq)
    )`;
  }

  /** The answer streaming now in this process, if any. */
  get active(): StoredStream | undefined {
    return this.#active;
  }

  /** Begin storing a new answer; any older stored answer is dropped. */
  start(stream: Omit<StoredStream, "status">): void {
    const origin = stream.originIds === undefined ? null : JSON.stringify(stream.originIds);
    this.#transaction(() => {
      this.#sql`DELETE FROM _outpost_chat_chunks`;
      this.#sql`DELETE FROM _outpost_chat_streams`;
      this
        .#sql`INSERT INTO _outpost_chat_streams (request_id, message_id, continuation, status, origin_ids)
        VALUES (${stream.requestId}, ${stream.messageId}, ${stream.continuation ? 1 : 0}, 'streaming', ${origin})`;
    });
    this.#active = { ...stream, status: "streaming", nextSeq: 0, bodies: [], written: 0 };
  }

  /** Store one chunk body of the active answer; returns its `seq`. */
  append(body: string): number {
    const active = this.#active;
    if (active === undefined) throw new Error("no active stream");
    const seq = active.nextSeq++;
    active.bodies.push(body);
    if (active.bodies.length - active.written >= FLUSH_CHUNKS) this.#flush();
    else this.#flushTimer ??= setTimeout(() => this.#flush(), FLUSH_MS);
    return seq;
  }

  /** The active answer ended: its last chunks and its status are written together. */
  finish(status: Exclude<StreamStatus, "streaming">): void {
    const active = this.#active;
    if (active === undefined) return;
    try {
      this.#flush(() => {
        this
          .#sql`UPDATE _outpost_chat_streams SET status = ${status} WHERE request_id = ${active.requestId}`;
      });
    } finally {
      this.#active = undefined;
    }
  }

  /** Write what the running answer has streamed so far, now. */
  flush(): void {
    this.#flush();
  }

  /** Write the chunks not written yet (and `also`, in the same transaction). */
  #flush(also?: () => void): void {
    if (this.#flushTimer !== undefined) clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    const active = this.#active;
    if (active === undefined) return;
    const from = active.written;
    try {
      this.#transaction(() => {
        for (let seq = from; seq < active.bodies.length; seq++) {
          const chunk = active.bodies[seq]!;
          this
            .#sql`INSERT INTO _outpost_chat_chunks (request_id, seq, body) VALUES (${active.requestId}, ${seq}, ${chunk})`;
        }
        also?.();
      });
    } catch (error) {
      // From a timer there is no caller to tell (the database closed at shutdown): the
      // chunks stay in memory and the next flush, or the answer's end, reports it.
      if (also !== undefined) throw error;
      return;
    }
    active.written = active.bodies.length;
  }

  #transaction(work: () => void): void {
    this.#sql`BEGIN`;
    try {
      work();
      this.#sql`COMMIT`;
    } catch (error) {
      try {
        this.#sql`ROLLBACK`;
      } catch {
        // The database is gone; there is nothing to roll back.
      }
      throw error;
    }
  }

  /** The stored answer for `requestId` (active or ended), if it is still kept. */
  find(requestId: string): StoredStream | undefined {
    const [row] = this
      .#sql<StreamRow>`SELECT * FROM _outpost_chat_streams WHERE request_id = ${requestId}`;
    return row === undefined ? undefined : toStream(row);
  }

  /** An answer left `streaming` by a process that is gone, if any. */
  orphan(): StoredStream | undefined {
    if (this.#active !== undefined) return undefined;
    const [row] = this
      .#sql<StreamRow>`SELECT * FROM _outpost_chat_streams WHERE status = 'streaming'`;
    return row === undefined ? undefined : toStream(row);
  }

  /** Mark an orphaned answer as ended. */
  settleOrphan(requestId: string, status: Exclude<StreamStatus, "streaming">): void {
    this.#sql`UPDATE _outpost_chat_streams SET status = ${status} WHERE request_id = ${requestId}`;
  }

  /** Stored chunk bodies of `requestId`, in order. */
  chunks(requestId: string): string[] {
    if (this.#active?.requestId === requestId) return [...this.#active.bodies];
    return this.#sql<{ body: string }>`
      SELECT body FROM _outpost_chat_chunks WHERE request_id = ${requestId} ORDER BY seq`.map(
      (row) => row.body,
    );
  }

  /** Forget every stored answer (the chat was cleared). */
  clear(): void {
    if (this.#flushTimer !== undefined) clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    this.#sql`DELETE FROM _outpost_chat_chunks`;
    this.#sql`DELETE FROM _outpost_chat_streams`;
    this.#active = undefined;
  }
}

function toStream(row: StreamRow): StoredStream {
  let originIds: string[] | undefined;
  try {
    originIds = row.origin_ids === null ? undefined : (JSON.parse(row.origin_ids) as string[]);
  } catch {
    originIds = undefined;
  }
  return {
    requestId: row.request_id,
    messageId: row.message_id,
    continuation: row.continuation === 1,
    status: row.status,
    originIds,
  };
}

import type { UIMessage } from "ai";
import type { SqlValue } from "../storage/agent-database.js";

/** The agent's `this.sql`, as the chat stores use it. */
export type Sql = <Row = Record<string, unknown>>(
  strings: TemplateStringsArray,
  ...values: SqlValue[]
) => Row[];

/**
 * The conversation, one row per message in the instance's own SQLite database (so it
 * survives restarts and, in cluster mode, moves with the instance). Writes touch only the
 * rows that changed: a long chat does not rewrite its whole history every turn.
 */
export class MessageStore {
  readonly #sql: Sql;
  /** What each stored row holds, to skip writes that change nothing. */
  readonly #stored = new Map<string, string>();

  constructor(sql: Sql) {
    this.#sql = sql;
    this.#sql`CREATE TABLE IF NOT EXISTS _outpost_chat_messages (
      id TEXT PRIMARY KEY,
      position INTEGER NOT NULL,
      message TEXT NOT NULL
    )`;
    this.#sql`CREATE TABLE IF NOT EXISTS _outpost_chat_context (
      key TEXT PRIMARY KEY,
      value TEXT NOT NULL
    )`;
  }

  /**
   * What a continuation reuses from the last request (its extra body fields and client
   * tool schemas), stored so a continuation after a restart gets them too.
   */
  saveContext(context: { body?: Record<string, unknown>; clientTools?: unknown[] }): void {
    this
      .#sql`INSERT INTO _outpost_chat_context (key, value) VALUES ('request', ${JSON.stringify(context)})
      ON CONFLICT(key) DO UPDATE SET value = excluded.value`;
  }

  /** The context `saveContext` stored, or `{}`. */
  loadContext(): { body?: Record<string, unknown>; clientTools?: unknown[] } {
    const [row] = this.#sql<{ value: string }>`
      SELECT value FROM _outpost_chat_context WHERE key = 'request'`;
    try {
      return row === undefined
        ? {}
        : (JSON.parse(row.value) as ReturnType<MessageStore["loadContext"]>);
    } catch {
      return {};
    }
  }

  /** Every stored message, in conversation order. */
  load(): UIMessage[] {
    const rows = this.#sql<{ id: string; position: number; message: string }>`
      SELECT id, position, message FROM _outpost_chat_messages ORDER BY position`;
    this.#stored.clear();
    const messages: UIMessage[] = [];
    for (const row of rows) {
      try {
        messages.push(JSON.parse(row.message) as UIMessage);
        this.#stored.set(row.id, `${row.position}:${row.message}`);
      } catch {
        // A row that no longer parses is dropped rather than breaking the whole chat.
      }
    }
    return messages;
  }

  /**
   * Make the stored conversation equal `messages`: changed rows are written, rows whose
   * message is gone are deleted, all in one transaction. `keep` trims to the newest N.
   */
  replace(messages: readonly UIMessage[], keep?: number): UIMessage[] {
    const kept =
      keep !== undefined && keep >= 0 && messages.length > keep
        ? messages.slice(messages.length - keep)
        : messages;
    const ids = new Set<string>();
    this.#sql`BEGIN`;
    try {
      kept.forEach((message, position) => {
        ids.add(message.id);
        const json = JSON.stringify(message);
        if (this.#stored.get(message.id) === `${position}:${json}`) return;
        this.#sql`INSERT INTO _outpost_chat_messages (id, position, message)
          VALUES (${message.id}, ${position}, ${json})
          ON CONFLICT(id) DO UPDATE SET position = excluded.position, message = excluded.message`;
        this.#stored.set(message.id, `${position}:${json}`);
      });
      for (const id of [...this.#stored.keys()]) {
        if (ids.has(id)) continue;
        this.#sql`DELETE FROM _outpost_chat_messages WHERE id = ${id}`;
        this.#stored.delete(id);
      }
      this.#sql`COMMIT`;
    } catch (error) {
      this.#sql`ROLLBACK`;
      this.#stored.clear();
      throw error;
    }
    return [...kept];
  }

  /** Forget every message, and the last request's context. */
  clear(): void {
    this.#sql`DELETE FROM _outpost_chat_messages`;
    this.#sql`DELETE FROM _outpost_chat_context`;
    this.#stored.clear();
  }
}

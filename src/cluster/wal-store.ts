import type { Sql } from "postgres";
import { FencedError } from "./errors.js";
import { fencedWrite } from "./fencing.js";
import type { PageBatch } from "./page-batch.js";
import { migrate } from "./schema.js";

/** One stored row of an instance's change log, as `ChangeStore#read()` yields it. */
export interface StoredChange {
  seq: number;
  chunk: number;
  /** Every page of the database (a snapshot): restore starts at the newest one. */
  base: boolean;
  pageSize: number;
  /** Database size in pages after this change. */
  dbPages: number;
  /** Page numbers, 32-bit little-endian, one per page image in `data`. */
  pages: Buffer;
  /** Page images, `pageSize` bytes each, in the order of `pages`. */
  data: Buffer;
}

/** Options of `ChangeStore`; defaults in the doc of each. */
export interface ChangeStoreOptions {
  /** Schema holding the cluster's tables (it must exist). Default `outpost`. */
  schema?: string;
  /** Largest page-image payload of one row; a larger change is split over rows. Default 4 MiB. */
  chunkBytes?: number;
}

const DEFAULTS = {
  schema: "outpost",
  chunkBytes: 4 * 1024 * 1024,
} satisfies Required<ChangeStoreOptions>;

/**
 * The durable change log of every agent instance, in PostgreSQL: for each instance its
 * newest snapshot (a base: every page) and the page batches committed after it, in order.
 * Every append is fenced by the writer's epoch in `<schema>.owners`.
 *
 * @example
 * const store = new ChangeStore(postgres(url), { schema: "outpost" });
 * await store.migrate();
 */
export class ChangeStore {
  readonly schema: string;
  readonly chunkBytes: number;
  #sql: Sql;

  constructor(sql: Sql, options: ChangeStoreOptions = {}) {
    const { schema, chunkBytes } = { ...DEFAULTS, ...options };
    this.#sql = sql;
    this.schema = schema;
    this.chunkBytes = chunkBytes;
  }

  /** The client every later query goes through. */
  get sql(): Sql {
    return this.#sql;
  }

  /**
   * Send every later query through `sql` instead; returns the client used until now, for
   * the caller to end. Queries already sent stay where they are: a node cut off from
   * PostgreSQL by a silent partition replaces its client, because connections stuck on a
   * dead route never fail by themselves and would hold every later append and restore.
   */
  replaceClient(sql: Sql): Sql {
    const old = this.#sql;
    this.#sql = sql;
    return old;
  }

  /** Create the cluster's tables, the change log's among them, when they are missing. */
  async migrate(): Promise<void> {
    await migrate(this.sql, this.schema);
  }

  /**
   * Append `batch` to `instance`'s log, fenced by `epoch`; a base batch also deletes
   * everything before it. Resolves with the batch's sequence number once PostgreSQL has
   * committed it; rejects with `FencedError` when `epoch` is not the owner's.
   *
   * A turn's batch fits one row and goes in one fenced INSERT, one round trip. A larger
   * batch (or a base) is one `fencedWrite` transaction.
   */
  async append(instance: string, epoch: number, batch: PageBatch): Promise<{ seq: number }> {
    const chunks = [...batch.chunks(this.chunkBytes)];
    if (chunks.length === 1 && !batch.base) {
      return { seq: await this.#fencedInsert(instance, epoch, batch, chunks[0]!) };
    }
    return fencedWrite(this.sql, this.schema, instance, epoch, async (tx) => {
      const table = tx(this.schema);
      // Numbered after the fence: a retry of a batch whose commit was never confirmed takes
      // the next number, which is right because batches are idempotent (see PageBatch).
      const [next] = await tx<{ seq: string }[]>`
        SELECT coalesce(max(seq), 0) + 1 AS seq FROM ${table}.changes WHERE instance = ${instance}`;
      const seq = Number(next!.seq);
      for (const [chunk, { pages, data }] of chunks.entries()) {
        await tx`
          INSERT INTO ${table}.changes
            (instance, seq, chunk, epoch, base, page_size, db_pages, pages, data)
          VALUES (${instance}, ${seq}, ${chunk}, ${epoch}, ${batch.base}, ${batch.pageSize},
                  ${batch.dbPages}, ${pages}, ${data})`;
      }
      if (batch.base) {
        await tx`DELETE FROM ${table}.changes WHERE instance = ${instance} AND seq < ${seq}`;
      }
      return { seq };
    });
  }

  /**
   * `fencedWrite`'s rule in one statement, for the one-row batch of a turn: the owner row is
   * read `FOR SHARE` and the row inserted only while its epoch is `epoch`. A concurrent
   * claim waits for this write to commit; a claim that committed first is seen (PostgreSQL
   * re-reads a row it waited for) and the statement inserts nothing.
   */
  async #fencedInsert(
    instance: string,
    epoch: number,
    batch: PageBatch,
    { pages, data }: { pages: Buffer; data: Buffer },
  ): Promise<number> {
    const { sql } = this;
    const table = sql(this.schema);
    // Numbered after the fence, as in `append`.
    const [result] = await sql<{ epoch: string | null; seq: string | null }[]>`
      WITH owner AS (
        SELECT epoch FROM ${table}.owners WHERE instance = ${instance} FOR SHARE
      ), inserted AS (
        INSERT INTO ${table}.changes
          (instance, seq, chunk, epoch, base, page_size, db_pages, pages, data)
        SELECT ${instance},
               (SELECT coalesce(max(seq), 0) + 1 FROM ${table}.changes WHERE instance = ${instance}),
               0, owner.epoch, ${batch.base}, ${batch.pageSize}, ${batch.dbPages}, ${pages}, ${data}
        FROM owner WHERE owner.epoch = ${epoch}
        RETURNING seq
      )
      SELECT (SELECT epoch FROM owner) AS epoch, (SELECT seq FROM inserted) AS seq`;
    if (result?.seq == null) {
      throw new FencedError(
        instance,
        epoch,
        result?.epoch == null ? undefined : Number(result.epoch),
      );
    }
    return Number(result.seq);
  }

  /**
   * Delete `instance`'s whole log (the agent was destroyed), fenced by `epoch` like every
   * write: the next activation restores nothing and starts fresh.
   */
  async forget(instance: string, epoch: number): Promise<void> {
    await fencedWrite(this.sql, this.schema, instance, epoch, async (tx) => {
      await tx`DELETE FROM ${tx(this.schema)}.changes WHERE instance = ${instance}`;
    });
  }

  /**
   * `instance`'s log from its newest base on, in order, a few rows at a time. One
   * statement, so one consistent view of the log.
   */
  async *read(instance: string, rowsPerFetch = 4): AsyncGenerator<StoredChange> {
    const { sql } = this;
    const table = sql(this.schema);
    const rows = sql<RawChange[]>`
      SELECT seq, chunk, base, page_size, db_pages, pages, data FROM ${table}.changes
      WHERE instance = ${instance}
        AND seq >= coalesce(
          (SELECT max(seq) FROM ${table}.changes WHERE instance = ${instance} AND base), 0)
      ORDER BY seq, chunk`.cursor(rowsPerFetch);
    for await (const batch of rows) {
      for (const row of batch) {
        yield {
          seq: Number(row.seq),
          chunk: row.chunk,
          base: row.base,
          pageSize: row.page_size,
          dbPages: row.db_pages,
          pages: row.pages,
          data: row.data,
        };
      }
    }
  }
}

interface RawChange {
  seq: string;
  chunk: number;
  base: boolean;
  page_size: number;
  db_pages: number;
  pages: Buffer;
  data: Buffer;
}

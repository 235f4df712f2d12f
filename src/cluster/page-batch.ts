/**
 * Database pages to make durable together: the newest image of every page a run of commits
 * wrote, and the database size after the last of them. Applying a batch is what a SQLite
 * checkpoint does (newest image per page, then truncate), so applying it over the state
 * before the batch, or over any state that already holds an older part of it, gives the
 * same database. That is why a batch that failed to ship may simply absorb newer pages and
 * be sent again: if the first attempt did commit after all, applying the merge on top of it
 * is still right.
 */
export class PageBatch {
  /** Every page of the database: restore starts from the newest such batch. */
  base: boolean;
  pageSize: number;
  /** Database size in pages after the batch. */
  dbPages: number;
  readonly #pages: Map<number, Uint8Array>;

  constructor(
    pageSize: number,
    dbPages: number,
    base = false,
    pages = new Map<number, Uint8Array>(),
  ) {
    this.pageSize = pageSize;
    this.dbPages = dbPages;
    this.base = base;
    this.#pages = pages;
  }

  /** A base batch holding the whole database `image` (e.g. from `Database#serialize()`). */
  static fromImage(image: Uint8Array, pageSize: number): PageBatch {
    if (image.length % pageSize !== 0) {
      throw new Error(
        `a database image of ${image.length} bytes is not whole ${pageSize}-byte pages`,
      );
    }
    const pages = new Map<number, Uint8Array>();
    for (let offset = 0, pgno = 1; offset < image.length; offset += pageSize, pgno++) {
      pages.set(pgno, image.subarray(offset, offset + pageSize));
    }
    return new PageBatch(pageSize, image.length / pageSize, true, pages);
  }

  /** Record the newest image of page `pgno` (the caller passes pages in commit order). */
  set(pgno: number, image: Uint8Array): void {
    this.#pages.set(pgno, image);
  }

  /** Bytes of page images this batch would ship. */
  get bytes(): number {
    let count = 0;
    for (const pgno of this.#pages.keys()) if (pgno <= this.dbPages) count++;
    return count * this.pageSize;
  }

  /** Fold `newer` (committed after this batch) into this one. */
  absorb(newer: PageBatch): void {
    if (newer.pageSize !== this.pageSize && !newer.base) {
      throw new Error(
        `page size changed from ${this.pageSize} to ${newer.pageSize} without a base`,
      );
    }
    if (newer.base) {
      // A base replaces everything before it.
      this.base = true;
      this.#pages.clear();
      this.pageSize = newer.pageSize;
    }
    for (const [pgno, image] of newer.#pages) this.#pages.set(pgno, image);
    this.dbPages = newer.dbPages;
  }

  /**
   * The batch as rows of at most `maxBytes` of page images each (at least one page a row,
   * and one row even when no page changed, so the size after the batch is recorded), in
   * page order. Pages past the final size are left out, as a checkpoint leaves them.
   */
  *chunks(maxBytes: number): Generator<{ pages: Buffer; data: Buffer }> {
    const numbers = [...this.#pages.keys()].filter((pgno) => pgno <= this.dbPages);
    numbers.sort((a, b) => a - b);
    const perChunk = Math.max(1, Math.floor(maxBytes / this.pageSize));
    let start = 0;
    do {
      const slice = numbers.slice(start, start + perChunk);
      const pages = Buffer.alloc(slice.length * 4);
      const data = Buffer.alloc(slice.length * this.pageSize);
      slice.forEach((pgno, i) => {
        pages.writeUInt32LE(pgno, i * 4);
        data.set(this.#pages.get(pgno)!, i * this.pageSize);
      });
      yield { pages, data };
      start += perChunk;
    } while (start < numbers.length);
  }
}

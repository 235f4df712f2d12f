import { mkdir, open, rename, rm, stat } from "node:fs/promises";
import { dirname } from "node:path";
import type { ChangeStore, StoredChange } from "./wal-store.js";

/** What `restoreDatabase()` wrote, for `ChangeShipper` to continue from. */
export interface RestoredDatabase {
  /** Sequence number of the last change applied; 0 when the log was empty. */
  seq: number;
  /** Bytes of page images in the log after its base (what a new snapshot would save). */
  logBytes: number;
  /** Size of the restored file in bytes (0 when nothing was restored). */
  fileBytes: number;
  /** The restored file's modification time in nanoseconds, to tell whether it changed since. */
  mtimeNs: bigint;
  /** Rows read from PostgreSQL. */
  rows: number;
  /** Wall time of the restore in milliseconds. */
  ms: number;
}

/**
 * Rebuild `instance`'s database at `path` from its durable log: the newest base, then every
 * later change in order, each applied as a checkpoint applies WAL frames (newest page
 * images, then the size after the change). Whatever was at `path` (a stale cache, its WAL
 * and wal-index) is replaced; the file is written aside and renamed into place, so a crash
 * mid-restore leaves no half database behind.
 *
 * With an empty log nothing at `path` is touched: the instance has never shipped, so a
 * database there can only be one from single-node mode, and the shipper makes it the
 * first snapshot instead of deleting it.
 */
export async function restoreDatabase(
  store: ChangeStore,
  instance: string,
  path: string,
): Promise<RestoredDatabase> {
  const started = performance.now();
  const partial = `${path}.restoring`;
  await mkdir(dirname(path), { recursive: true });
  const file = await open(partial, "w");
  let seq = 0;
  let rows = 0;
  let logBytes = 0;
  let pageSize = 0;
  try {
    for await (const change of store.read(instance)) {
      if (pageSize !== 0 && change.pageSize !== pageSize && !change.base) {
        throw new Error(`change ${change.seq} of ${instance} has another page size`);
      }
      pageSize = change.pageSize;
      if (!change.base) logBytes += change.data.length;
      await applyPages(file, change);
      // Every chunk of a change carries the size after it; pages past it are gone.
      await file.truncate(change.dbPages * pageSize);
      seq = change.seq;
      rows++;
    }
    await file.sync();
  } finally {
    await file.close();
  }
  if (rows === 0) {
    await rm(partial, { force: true });
    return { seq, logBytes, fileBytes: 0, mtimeNs: 0n, rows, ms: performance.now() - started };
  }
  // The old WAL goes first: paired with the new file it would be replayed onto it.
  await Promise.all(
    [`${path}-wal`, `${path}-shm`, `${path}-journal`].map((stale) => rm(stale, { force: true })),
  );
  await rename(partial, path);
  const restored = await stat(path, { bigint: true });
  return {
    seq,
    logBytes,
    fileBytes: Number(restored.size),
    mtimeNs: restored.mtimeNs,
    rows,
    ms: performance.now() - started,
  };
}

/** Write the row's page images, one write per run of consecutive page numbers. */
async function applyPages(
  file: Awaited<ReturnType<typeof open>>,
  change: StoredChange,
): Promise<void> {
  const { pages, data, pageSize } = change;
  const count = pages.length / 4;
  let runStart = 0;
  for (let i = 1; i <= count; i++) {
    const consecutive =
      i < count && pages.readUInt32LE(i * 4) === pages.readUInt32LE((i - 1) * 4) + 1;
    if (consecutive) continue;
    const firstPage = pages.readUInt32LE(runStart * 4);
    await file.write(
      data,
      runStart * pageSize,
      (i - runStart) * pageSize,
      (firstPage - 1) * pageSize,
    );
    runStart = i;
  }
}

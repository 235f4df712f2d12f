import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { PageBatch } from "./page-batch.js";

/*
 * The layouts read here are SQLite's documented on-disk formats
 * (https://www.sqlite.org/fileformat2.html, "The Write-Ahead Log" and "The WAL-Index").
 */
const WAL_HEADER_BYTES = 32;
const FRAME_HEADER_BYTES = 24;
const WAL_MAGIC_LITTLE = 0x377f0682;
const WAL_MAGIC_BIG = 0x377f0683;
/** Two copies of the wal-index header, 48 bytes each, at the start of the -shm file. */
const SHM_HEADER_BYTES = 48;
/** The salts of a wal-index whose WAL has had no frame yet. */
const NO_SALTS = Buffer.alloc(8);

/** What `WalCapture#read()` found. */
export type Captured =
  /** Nothing was committed since the last read. */
  | { kind: "none" }
  /** The pages committed since the last read. */
  | { kind: "pages"; batch: PageBatch; walFrames: number }
  /**
   * The WAL was reset (a checkpoint this reader did not make) or cannot be read, so frames
   * may have been committed that this reader never saw: only a full image of the database
   * is a safe next change.
   */
  | { kind: "lost"; why: string };

interface IndexHeader {
  /** Frames of the current WAL generation that end in a commit (the last valid frame). */
  mxFrame: number;
  /** Identify the WAL generation: they change at every WAL reset. */
  salts: Buffer;
}

/**
 * Reads, after each turn, the frames SQLite committed to a database's WAL since the last
 * read, without going through SQLite: the wal-index (-shm) says how many frames are
 * committed and which WAL generation is current; the frames are read from the -wal file
 * and their salts and running checksums checked, so a torn or stale frame is never taken
 * for a committed one.
 *
 * It needs automatic checkpoints off (`wal_autocheckpoint = 0`): a checkpoint followed by
 * a write restarts the WAL from its start, and frames not yet read would be gone. Such a
 * reset is detected (the generation's salts change) and reported as `lost`.
 */
export class WalCapture {
  readonly #walPath: string;
  readonly #shmPath: string;
  #walFd: number | undefined;
  #shmFd: number | undefined;
  /** Salts of the generation being read; `undefined` until `rebase()`. */
  #salts: Buffer | undefined;
  /** Frames of that generation already read. */
  #frame = 0;
  /** The running checksum after frame `#frame` (after the WAL header when it is 0). */
  #s0 = 0;
  #s1 = 0;
  #littleEndian = true;
  #pageSize = 0;

  constructor(databasePath: string) {
    this.#walPath = `${databasePath}-wal`;
    this.#shmPath = `${databasePath}-shm`;
  }

  /** Bytes of the WAL read so far: what a checkpoint would move into the database file. */
  get walBytes(): number {
    return this.#frame === 0
      ? 0
      : WAL_HEADER_BYTES + this.#frame * (FRAME_HEADER_BYTES + this.#pageSize);
  }

  /**
   * Start reading at the first frame of the current WAL, for a database whose file held
   * exactly the durable state when it was opened. Only safe while the WAL is in its first
   * generation since it was created (its checkpoint sequence is 0): then every committed
   * frame since the open is still in it. False when that cannot be shown.
   */
  resume(): boolean {
    const header = this.#readIndexHeader();
    if (header === undefined) return false;
    this.#salts = header.salts;
    this.#frame = 0;
    if (header.mxFrame === 0) return true;
    try {
      const walHeader = Buffer.alloc(WAL_HEADER_BYTES);
      readSync(this.#wal(), walHeader, 0, WAL_HEADER_BYTES, 0);
      if (walHeader.readUInt32BE(12) === 0 && this.#readWalHeader()) return true;
    } catch {
      // No readable WAL: the position cannot be shown.
    }
    this.#salts = undefined;
    return false;
  }

  /**
   * Take everything committed so far as already handled (by a full image of the database
   * or by a checkpoint run right after a read): the next read starts after it.
   */
  rebase(): void {
    const header = this.#readIndexHeader();
    this.#salts = header?.salts;
    this.#frame = header?.mxFrame ?? 0;
    if (header === undefined || header.mxFrame === 0) return;
    try {
      // Pick up the byte order and the running checksum of the last committed frame.
      if (!this.#readWalHeader()) throw new Error("the WAL header does not match");
      const frameBytes = FRAME_HEADER_BYTES + this.#pageSize;
      const last = Buffer.alloc(FRAME_HEADER_BYTES);
      const at = WAL_HEADER_BYTES + (header.mxFrame - 1) * frameBytes;
      if (readSync(this.#wal(), last, 0, FRAME_HEADER_BYTES, at) !== FRAME_HEADER_BYTES) {
        throw new Error("the WAL is shorter than the wal-index says");
      }
      this.#s0 = last.readUInt32BE(16);
      this.#s1 = last.readUInt32BE(20);
    } catch {
      // The next read reports the position lost, which is always safe.
      this.#salts = undefined;
    }
  }

  /** The pages committed since the last read (see `Captured`). */
  read(): Captured {
    try {
      return this.#read();
    } catch (error) {
      // A WAL file that vanished under us (the journal mode was changed) is a lost position.
      return { kind: "lost", why: error instanceof Error ? error.message : String(error) };
    }
  }

  #read(): Captured {
    if (this.#salts === undefined) return { kind: "lost", why: "no WAL position yet" };
    const header = this.#readIndexHeader();
    if (header === undefined) return { kind: "lost", why: "the wal-index is gone" };
    if (!header.salts.equals(this.#salts)) {
      if (!this.#isFirstGeneration(header)) return { kind: "lost", why: "the WAL was reset" };
      this.#salts = header.salts;
    }
    if (header.mxFrame < this.#frame) return { kind: "lost", why: "the WAL shrank" };
    if (header.mxFrame === this.#frame) return { kind: "none" };

    if (this.#frame === 0 && !this.#readWalHeader()) {
      return { kind: "lost", why: "the WAL header does not match the wal-index" };
    }
    const pageSize = this.#pageSize;
    const frameBytes = FRAME_HEADER_BYTES + pageSize;
    const count = header.mxFrame - this.#frame;
    const frames = Buffer.alloc(count * frameBytes);
    const got = readSync(
      this.#wal(),
      frames,
      0,
      frames.length,
      WAL_HEADER_BYTES + this.#frame * frameBytes,
    );
    if (got !== frames.length)
      return { kind: "lost", why: "the WAL is shorter than the wal-index says" };

    const batch = new PageBatch(pageSize, 0);
    const view = new DataView(frames.buffer, frames.byteOffset, frames.length);
    let s0 = this.#s0;
    let s1 = this.#s1;
    for (let i = 0; i < count; i++) {
      const at = i * frameBytes;
      if (!frames.subarray(at + 8, at + 16).equals(this.#salts)) {
        return { kind: "lost", why: "a frame's salts do not match its WAL" };
      }
      [s0, s1] = checksum(view, at, 8, this.#littleEndian, s0, s1);
      [s0, s1] = checksum(view, at + FRAME_HEADER_BYTES, pageSize, this.#littleEndian, s0, s1);
      if (s0 !== view.getUint32(at + 16) || s1 !== view.getUint32(at + 20)) {
        return { kind: "lost", why: "a frame's checksum does not match" };
      }
      batch.set(view.getUint32(at), frames.subarray(at + FRAME_HEADER_BYTES, at + frameBytes));
      const sizeAfterCommit = view.getUint32(at + 4);
      if (sizeAfterCommit !== 0) batch.dbPages = sizeAfterCommit;
    }
    if (view.getUint32((count - 1) * frameBytes + 4) === 0) {
      return { kind: "lost", why: "the last committed frame is not a commit frame" };
    }
    this.#frame = header.mxFrame;
    this.#s0 = s0;
    this.#s1 = s1;
    return { kind: "pages", batch, walFrames: header.mxFrame };
  }

  /** Close the files this reader holds open. */
  close(): void {
    if (this.#walFd !== undefined) closeSync(this.#walFd);
    if (this.#shmFd !== undefined) closeSync(this.#shmFd);
    this.#walFd = undefined;
    this.#shmFd = undefined;
  }

  /**
   * The wal-index header, or `undefined` when there is none (yet). Both copies must agree:
   * SQLite writes them one after the other, and between transactions they are equal.
   */
  #readIndexHeader(): IndexHeader | undefined {
    const fd = this.#shm();
    if (fd === undefined) return undefined;
    const both = Buffer.alloc(SHM_HEADER_BYTES * 2);
    if (readSync(fd, both, 0, both.length, 0) !== both.length) return undefined;
    const first = both.subarray(0, SHM_HEADER_BYTES);
    if (!first.equals(both.subarray(SHM_HEADER_BYTES)) || first[12] !== 1) return undefined;
    // The wal-index is in the machine's byte order; SQLite's builds here are little-endian.
    return { mxFrame: first.readUInt32LE(16), salts: Buffer.from(first.subarray(32, 40)) };
  }

  /**
   * Whether the WAL, empty with no salts yet when this reader took its position, has since
   * only been written, never reset: SQLite gives a WAL its salts with its first frame, and
   * a WAL that was never reset still has checkpoint sequence 0 in its header.
   */
  #isFirstGeneration(header: IndexHeader): boolean {
    if (this.#frame !== 0 || !this.#salts?.equals(NO_SALTS)) return false;
    const walHeader = Buffer.alloc(WAL_HEADER_BYTES);
    if (readSync(this.#wal(), walHeader, 0, WAL_HEADER_BYTES, 0) !== WAL_HEADER_BYTES) return false;
    return walHeader.readUInt32BE(12) === 0 && walHeader.subarray(16, 24).equals(header.salts);
  }

  /** Read the WAL header of the current generation; false when it is not that generation's. */
  #readWalHeader(): boolean {
    const header = Buffer.alloc(WAL_HEADER_BYTES);
    if (readSync(this.#wal(), header, 0, WAL_HEADER_BYTES, 0) !== WAL_HEADER_BYTES) return false;
    const magic = header.readUInt32BE(0);
    if (magic !== WAL_MAGIC_LITTLE && magic !== WAL_MAGIC_BIG) return false;
    if (this.#salts === undefined || !header.subarray(16, 24).equals(this.#salts)) return false;
    this.#littleEndian = magic === WAL_MAGIC_LITTLE;
    this.#pageSize = header.readUInt32BE(8);
    const view = new DataView(header.buffer, header.byteOffset, header.length);
    const [s0, s1] = checksum(view, 0, 24, this.#littleEndian, 0, 0);
    if (s0 !== header.readUInt32BE(24) || s1 !== header.readUInt32BE(28)) return false;
    this.#s0 = s0;
    this.#s1 = s1;
    return true;
  }

  #wal(): number {
    this.#walFd = reopenIfUnlinked(this.#walFd, this.#walPath);
    if (this.#walFd === undefined) throw new Error("the WAL file is missing");
    return this.#walFd;
  }

  #shm(): number | undefined {
    this.#shmFd = reopenIfUnlinked(this.#shmFd, this.#shmPath);
    return this.#shmFd;
  }
}

/** `fd` while its file still has a name, else a fresh descriptor of `path` (or `undefined`). */
function reopenIfUnlinked(fd: number | undefined, path: string): number | undefined {
  if (fd !== undefined) {
    if (fstatSync(fd).nlink > 0) return fd;
    closeSync(fd);
  }
  try {
    return openSync(path, "r");
  } catch {
    return undefined;
  }
}

/**
 * SQLite's WAL checksum over `length` bytes from `offset` (a multiple of 8), continuing
 * from (s0, s1); words are read in the byte order the WAL's magic number names.
 */
function checksum(
  view: DataView,
  offset: number,
  length: number,
  littleEndian: boolean,
  s0: number,
  s1: number,
): [number, number] {
  for (let i = offset, end = offset + length; i < end; i += 8) {
    s0 = (s0 + view.getUint32(i, littleEndian) + s1) >>> 0;
    s1 = (s1 + view.getUint32(i + 4, littleEndian) + s0) >>> 0;
  }
  return [s0, s1];
}

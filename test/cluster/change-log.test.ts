import { statSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { WalCapture } from "../../src/cluster/change-log.js";
import { tempDir } from "../helpers/server.js";

const opened: { db: Database.Database; capture: WalCapture; remove(): void }[] = [];

afterEach(() => {
  for (const { db, capture, remove } of opened.splice(0)) {
    capture.close();
    db.close();
    remove();
  }
});

/** A database reopened so that its WAL starts from nothing, with a capture positioned there. */
function openFreshWal() {
  const { db, path, capture } = openWal();
  db.close();
  const reopened = new Database(path);
  reopened.pragma("wal_autocheckpoint = 0");
  reopened.pragma("schema_version");
  opened.at(-1)!.db = reopened;
  capture.rebase();
  return { db: reopened, capture };
}

/** A WAL database with automatic checkpoints off and a capture positioned after its setup. */
function openWal() {
  const dir = tempDir("outpost-wal-");
  const path = join(dir.dir, "db.sqlite");
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma("wal_autocheckpoint = 0");
  db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)");
  const capture = new WalCapture(path);
  capture.rebase();
  opened.push({ db, capture, remove: dir.remove });
  return { db, path, capture };
}

describe("WalCapture", () => {
  it("captures the pages of committed transactions and the database size after the last one", () => {
    const { db, capture } = openWal();
    expect(capture.read()).toEqual({ kind: "none" });
    db.prepare("INSERT INTO t (b) VALUES (randomblob(10000))").run();
    db.prepare("INSERT INTO t (b) VALUES (randomblob(10))").run();
    const captured = capture.read();
    expect(captured.kind).toBe("pages");
    if (captured.kind !== "pages") return;
    expect(captured.batch.dbPages).toBe(db.pragma("page_count", { simple: true }));
    // The 10 000-byte blob overflows onto further pages; each page counted once.
    expect(captured.batch.bytes).toBeGreaterThanOrEqual(3 * 4096);
    expect(capture.read()).toEqual({ kind: "none" });
  });

  it("never captures a rolled-back transaction, even one that spilled frames into the WAL", () => {
    const { db, path, capture } = openWal();
    db.pragma("cache_size = 5");
    const walBefore = statSync(`${path}-wal`).size;
    db.exec("BEGIN");
    for (let i = 0; i < 50; i++) db.prepare("INSERT INTO t (b) VALUES (randomblob(4000))").run();
    // Uncommitted pages reached the WAL file: a reader of the file alone would see them.
    expect(statSync(`${path}-wal`).size).toBeGreaterThan(walBefore + 10 * 4096);
    db.exec("ROLLBACK");
    expect(capture.read()).toEqual({ kind: "none" });

    db.prepare("INSERT INTO t (b) VALUES (x'01')").run();
    const captured = capture.read();
    expect(captured.kind).toBe("pages");
    if (captured.kind !== "pages") return;
    expect(captured.batch.dbPages).toBe(db.pragma("page_count", { simple: true }));
    expect(captured.batch.bytes).toBeLessThanOrEqual(3 * 4096);
  });

  it("reports the position lost when a checkpoint it did not run reset the WAL, even one left empty", () => {
    const { db, path, capture } = openWal();
    db.prepare("INSERT INTO t (b) VALUES (x'01')").run();
    db.pragma("wal_checkpoint(TRUNCATE)");
    expect(statSync(`${path}-wal`).size).toBe(0);
    expect(capture.read()).toMatchObject({ kind: "lost" });
  });

  it("reports the position lost when a checkpoint it did not run was followed by more writes", () => {
    const { db, capture } = openWal();
    db.prepare("INSERT INTO t (b) VALUES (x'01')").run();
    db.pragma("wal_checkpoint(PASSIVE)");
    db.prepare("INSERT INTO t (b) VALUES (x'02')").run();
    expect(capture.read()).toMatchObject({ kind: "lost" });
  });

  it("reads on across a checkpoint it was rebased after", () => {
    const { db, capture } = openWal();
    db.prepare("INSERT INTO t (b) VALUES (x'01')").run();
    expect(capture.read().kind).toBe("pages");
    db.pragma("wal_checkpoint(TRUNCATE)");
    capture.rebase();
    db.prepare("INSERT INTO t (b) VALUES (x'02')").run();
    expect(capture.read().kind).toBe("pages");
  });

  it("reads a WAL started from nothing, whose first frame brought new salts, as the same history", () => {
    const { db, capture } = openFreshWal();
    db.prepare("INSERT INTO t (b) VALUES (x'01')").run();
    expect(capture.read().kind).toBe("pages");
  });

  it("reports the position lost when a WAL started from nothing was reset before it was read", () => {
    const { db, capture } = openFreshWal();
    db.prepare("INSERT INTO t (b) VALUES (x'01')").run();
    db.pragma("wal_checkpoint(TRUNCATE)");
    db.prepare("INSERT INTO t (b) VALUES (x'02')").run();
    expect(capture.read()).toMatchObject({ kind: "lost" });
  });
});

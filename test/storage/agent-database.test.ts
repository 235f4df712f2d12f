import { statSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { AgentDatabase } from "../../src/storage/agent-database.js";
import { tempDir } from "../helpers/server.js";

const dirs: ReturnType<typeof tempDir>[] = [];

afterEach(() => {
  for (const dir of dirs.splice(0)) dir.remove();
});

/** Write about 2 000 WAL frames (past SQLite's automatic checkpoint at 1 000). */
function writeMany(db: AgentDatabase): void {
  db.connection.exec("CREATE TABLE IF NOT EXISTS big (b BLOB)");
  const insert = db.connection.prepare("INSERT INTO big (b) VALUES (randomblob(4000))");
  for (let i = 0; i < 2_000; i++) insert.run();
}

function walBytes(path: string): number {
  return statSync(`${path}-wal`).size;
}

describe("AgentDatabase checkpoints", () => {
  it("checkpoints its WAL by itself by default (single-node mode unchanged)", () => {
    const dir = tempDir();
    dirs.push(dir);
    const path = join(dir.dir, "a.db");
    const db = new AgentDatabase(path);
    writeMany(db);
    // A checkpoint restarted the WAL, so it holds far fewer than 2 000 frames.
    expect(walBytes(path)).toBeLessThan(1_500 * 4_120);
    expect(db.connection.pragma("wal_autocheckpoint", { simple: true })).toBe(1000);
    db.close();
  });

  it("leaves every committed frame in the WAL with autoCheckpoint: false, for change shipping", () => {
    const dir = tempDir();
    dirs.push(dir);
    const path = join(dir.dir, "a.db");
    const db = new AgentDatabase(path, "process", { autoCheckpoint: false });
    writeMany(db);
    expect(walBytes(path)).toBeGreaterThan(2_000 * 4_120);
    expect(db.connection.pragma("wal_autocheckpoint", { simple: true })).toBe(0);
    db.close();
  });
});

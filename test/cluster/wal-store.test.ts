import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FencedError } from "../../src/cluster/errors.js";
import { restoreDatabase } from "../../src/cluster/restore.js";
import { tempDir } from "../helpers/server.js";
import { createStorageSchema, openOwner, type StorageSchema } from "./fixtures.js";

let pg: StorageSchema;
const dirs: ReturnType<typeof tempDir>[] = [];

beforeEach(async () => {
  pg = await createStorageSchema();
});

afterEach(async () => {
  for (const dir of dirs.splice(0)) dir.remove();
  await pg.drop();
});

function freshPath(): string {
  const dir = tempDir("outpost-store-");
  dirs.push(dir);
  return join(dir.dir, "db.sqlite");
}

describe("ChangeStore", () => {
  it("forgets a destroyed instance's log only for its owner's epoch, after which a restore starts empty", async () => {
    const instance = "room/destroyed";
    const epoch = await pg.claim(instance, "node-a");
    const owner = await openOwner(pg.store, instance, freshPath(), epoch);
    owner.db.connection.exec("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1)");
    await owner.shipper.flush();
    await owner.close();

    await expect(pg.store.forget(instance, epoch - 1)).rejects.toBeInstanceOf(FencedError);
    expect((await restoreDatabase(pg.store, instance, freshPath())).seq).toBeGreaterThan(0);

    await pg.store.forget(instance, epoch);
    const restored = await restoreDatabase(pg.store, instance, freshPath());
    expect(restored).toMatchObject({ seq: 0, rows: 0 });
  });
});

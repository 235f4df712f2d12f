import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FencedError } from "../../src/cluster/errors.js";
import { restoreDatabase } from "../../src/cluster/restore.js";
import { openOwner, storagePerTest } from "./fixtures.js";

const pg = storagePerTest("outpost-store-");
const freshPath = () => join(pg.freshDir(), "db.sqlite");

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

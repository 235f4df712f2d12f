import type { Logger } from "pino";
import type { InstanceStorage } from "../agent/instance.js";
import type { StorageProvider } from "../agent/registry.js";
import { AgentDatabase, type Durability } from "../storage/agent-database.js";
import { NotOwnerError } from "./errors.js";
import { instanceKey } from "./instance-key.js";
import type { ClusterNode } from "./node.js";
import { ChangeGate } from "./output-gate.js";
import { restoreDatabase } from "./restore.js";
import { ChangeShipper } from "./shipper.js";

/**
 * Instance storage in cluster mode. Before an instance starts on this node (which must own
 * it), its database is rebuilt from the durable copy in PostgreSQL; every change it commits
 * is shipped back, fenced by the epoch, and its output waits at a gate until the changes are
 * durable. When the instance is let go, the rest is shipped and the ownership released.
 */
export function clusterStorage(options: {
  node: Promise<ClusterNode>;
  durability: Durability;
  logger: Logger;
  /** The instance can no longer serve (fenced, or its changes cannot be made durable). */
  onFailure(agent: string, name: string, error: unknown): void;
}): StorageProvider {
  const { durability, logger } = options;
  /** Instances whose last changes are being shipped; released only after. */
  const closing = new Map<string, Promise<void>>();
  return {
    async prepare(agent, name, path): Promise<InstanceStorage> {
      const node = await options.node;
      const key = instanceKey(agent, name);
      // A previous activation on this node may still be shipping or forgetting its data.
      await closing.get(key);
      let epoch = node.ownership.epochOf(key);
      if (epoch === undefined) {
        const claim = await node.place(agent, name);
        if (!claim.owned) throw new NotOwnerError(key);
        epoch = claim.epoch;
      }
      const restored = await restoreDatabase(node.changes, key, path);
      const db = new AgentDatabase(path, durability, { autoCheckpoint: false });
      let shipper: ChangeShipper;
      try {
        shipper = new ChangeShipper({
          db: db.connection,
          path,
          store: node.changes,
          instance: key,
          epoch,
          restored,
        });
      } catch (error) {
        db.close();
        throw error;
      }
      logger.debug(
        { agent, instance: name, epoch, restoredMs: Math.round(restored.ms), rows: restored.rows },
        "instance restored",
      );
      const gate = new ChangeGate(
        () => shipper.flush(),
        (error) => options.onFailure(agent, name, error),
      );
      return {
        open: () => db,
        exists: () => true,
        gate,
        beforeRun: () => shipper.flush(),
        close: () => {
          // Ship what is left, then close: SQLite checkpoints the WAL when its last
          // connection closes, and the shipper reads committed changes from it.
          const done = shipper
            .flush()
            .catch(() => {})
            .then(() => shipper.close())
            .finally(() => db.close());
          closing.set(key, done);
          void done.finally(() => {
            if (closing.get(key) === done) closing.delete(key);
          });
        },
      };
    },
    destroyed(agent, name) {
      const key = instanceKey(agent, name);
      const done = (async () => {
        await closing.get(key);
        const node = await options.node;
        const epoch = node.ownership.epochOf(key);
        // Fenced like every write: only the owner can make the durable copy go away.
        if (epoch !== undefined) await node.changes.forget(key, epoch);
        await node.ownership.release(key);
      })().catch((error) =>
        logger.error(
          { err: error, agent, instance: name },
          "destroyed instance's durable copy kept",
        ),
      );
      closing.set(key, done);
      void done.finally(() => {
        if (closing.get(key) === done) closing.delete(key);
      });
    },
    released(agent, name) {
      const key = instanceKey(agent, name);
      // Another node may claim it once released: not before its last changes are durable.
      void (closing.get(key) ?? Promise.resolve())
        .then(async () => {
          const node = await options.node;
          await node.ownership.release(key);
          // Its next due time, if any, is now every node's to watch.
          await node.waker?.released(key);
        })
        .catch(() => {});
    },
    wakeup(agent, name, time) {
      void options.node
        .then((node) => node.wakeups.set(instanceKey(agent, name), time))
        .catch((error) =>
          logger.debug({ err: error, agent, instance: name }, "wakeup not written"),
        );
    },
  };
}

/**
 * The load generator process: pinned to its own core by the orchestrator, it takes one
 * command at a time over IPC and answers with the command's result.
 */
import { performance } from "node:perf_hooks";
import { type Algorithm, type BenchKeys, type Contender, stormRoom } from "../config.js";
import { createSigner, forgedToken } from "../tokens.js";
import type { LoadCommand, Reply, Request } from "./protocol.js";
import { Storm } from "./storm.js";
import { connects, HeldConnections, refused } from "./workloads.js";

let keys: BenchKeys | undefined;
const tokens: Record<Algorithm, string[]> = { EdDSA: [], HS256: [] };
let forged: string | undefined;
/** Held connections, a set per contender. */
const held = new Map<Contender, HeldConnections>();
function heldBy(contender: Contender): HeldConnections {
  let set = held.get(contender);
  if (set === undefined) {
    set = new HeldConnections();
    held.set(contender, set);
  }
  return set;
}
const storm = new Storm();
let stormTokens: string[] = [];
let stormRooms = 0;

function reply(message: Reply): void {
  process.send?.(message);
}

const progress = (text: string) => reply({ type: "progress", text });

/** Sign until `pool` holds `count` tokens; token i is for the instance `name(i)` gives. */
async function signTokens(
  algorithm: Algorithm,
  count: number,
  pool: string[] = tokens[algorithm],
  name?: (i: number) => string,
): Promise<number> {
  if (keys === undefined) throw new Error("init first");
  const signer = await createSigner(keys, algorithm);
  // Sign in batches: a few hundred in flight keeps memory flat and the thread pool busy.
  while (pool.length < count) {
    const batch = Math.min(256, count - pool.length);
    const base = pool.length;
    pool.push(
      ...(await Promise.all(
        Array.from({ length: batch }, (_, i) => signer.sign(`user-${base + i}`, name?.(base + i))),
      )),
    );
  }
  return pool.length;
}

async function run(command: LoadCommand): Promise<unknown> {
  switch (command.cmd) {
    case "init":
      keys = command.keys;
      forged = await forgedToken(keys);
      return null;
    case "tokens":
      tokens[command.algorithm] = [];
      return signTokens(command.algorithm, command.count);
    case "connects":
      return connects(command, tokens[command.algorithm], command, progress);
    case "refused":
      if (forged === undefined) throw new Error("init first");
      return refused(command, forged, command, progress);
    case "open":
      return heldBy(command.contender).open(
        command,
        tokens[command.algorithm].slice(command.offset ?? 0),
        command,
        progress,
      );
    case "rpc":
      return heldBy(command.contender).rpc(command);
    case "fanout":
      return heldBy(command.contender).fanout(command);
    case "closeAll":
      await Promise.all([...held.values()].map((set) => set.closeAll()));
      held.clear();
      return null;
    case "stormTokens":
      stormTokens = [];
      stormRooms = command.rooms;
      return signTokens("EdDSA", command.count, stormTokens, (i) => stormRoom(i % command.rooms));
    case "stormOpen": {
      if (command.rooms !== stormRooms) throw new Error("stormTokens first, for as many rooms");
      const tokens = stormTokens.slice(0, command.count);
      const opened = await storm.open(command, tokens, command.rooms, command.concurrency);
      if (opened.opened === tokens.length) await storm.seed(command.rooms);
      return opened;
    }
    case "stormArm":
      await storm.arm();
      return null;
    case "stormRoute":
      storm.route(command.ports);
      return null;
    case "stormWait":
      return storm.wait(command.timeoutMs);
    case "stormClose":
      await storm.close();
      return null;
  }
}

// One command at a time, in arrival order: workloads must never overlap.
let queue: Promise<void> = Promise.resolve();
process.on("message", (request: Request) => {
  queue = queue.then(() => {
    // The generator's own CPU time, to tell a server-bound result from a client-bound one.
    const before = process.cpuUsage();
    const started = performance.now();
    return run(request.command).then(
      (result) => {
        const cpu = process.cpuUsage(before);
        if (result !== null && typeof result === "object") {
          Object.assign(result, {
            clientBusy: (cpu.user + cpu.system) / 1000 / (performance.now() - started),
          });
        }
        reply({ id: request.id, ok: true, result });
      },
      (error: unknown) =>
        reply({ id: request.id, ok: false, error: String((error as Error)?.stack ?? error) }),
    );
  });
});
process.on("disconnect", () => process.exit(0));

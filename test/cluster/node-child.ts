/**
 * One cluster node (membership and ownership) in a process of its own, for tests that pause
 * or kill it. Usage: `node --import tsx node-child.ts '<json options>'`. Reads one JSON
 * command per line on stdin and prints one JSON line per reply and per event on stdout.
 *
 * Commands: `claim`, `release` and `write` (a fenced insert into the test's `fence_test`
 * table through `Ownership.write`), and `rawWrite`, the same insert through `fencedWrite`
 * with an epoch given by the test, so that only Postgres's check stands in its way.
 */
import type postgres from "postgres";
import { fencedWrite } from "../../src/cluster/fencing.js";
import type { MembershipOptions } from "../../src/cluster/membership.js";
import { startChildNode } from "./node-process.js";

const node = await startChildNode<MembershipOptions>();
const { options, membership, ownership, sql } = node;

interface Command {
  id: number;
  cmd: "claim" | "release" | "write" | "rawWrite" | "exit";
  instance: string;
  value?: number;
  epoch?: number;
}

const insert = (instance: string, value: number) => (tx: postgres.TransactionSql) =>
  tx`INSERT INTO ${tx(options.schema)}.fence_test (instance, value) VALUES (${instance}, ${value})`;

async function run(command: Command): Promise<object> {
  switch (command.cmd) {
    case "claim":
      return await ownership.claim(command.instance);
    case "release":
      await ownership.release(command.instance);
      return {};
    case "write":
      await ownership.write(command.instance, insert(command.instance, command.value ?? 0));
      return { written: true };
    case "rawWrite":
      await fencedWrite(
        sql,
        options.schema,
        command.instance,
        command.epoch ?? 0,
        insert(command.instance, command.value ?? 0),
      );
      return { written: true };
    case "exit":
      await ownership.close();
      await membership.close();
      await sql.end({ timeout: 1 });
      process.exit(0);
  }
}

node.serve(run);

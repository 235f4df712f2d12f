/**
 * One cluster node (membership and ownership) in a process of its own, for tests that pause
 * or kill it. Usage: `node --import tsx node-child.ts '<json options>'`. Reads one JSON
 * command per line on stdin and prints one JSON line per reply and per event on stdout.
 *
 * Commands: `claim`, `release` and `write` (a fenced insert into the test's `fence_test`
 * table through `Ownership.write`), and `rawWrite`, the same insert through `fencedWrite`
 * with an epoch given by the test, so that only Postgres's check stands in its way.
 */
import { createInterface } from "node:readline";
import postgres from "postgres";
import { fencedWrite } from "../../src/cluster/fencing.js";
import { Membership, type MembershipOptions } from "../../src/cluster/membership.js";
import { Ownership } from "../../src/cluster/ownership.js";

const options = JSON.parse(process.argv[2] ?? "") as MembershipOptions;
const print = (line: object) => process.stdout.write(`${JSON.stringify(line)}\n`);

const membership = await Membership.start(options);
const sql = postgres(options.postgres, { max: 4, onnotice: () => {} });
const ownership = new Ownership(options, membership);
membership.on("serving", () => print({ event: "serving" }));
membership.on("fenced", ({ reason }) => print({ event: "fenced", reason }));
ownership.on("lost", (lost) => print({ event: "lost", ...lost }));

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

createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line) as Command;
  run(command).then(
    (result) => print({ reply: command.id, ok: true, result }),
    (error: { code?: string; message?: string }) =>
      print({ reply: command.id, ok: false, code: error.code, message: error.message }),
  );
});
print({ event: "ready", nodeId: membership.nodeId });

import type { Sql, TransactionSql } from "postgres";
import { FencedError } from "./errors.js";

/**
 * Run `write` in one Postgres transaction that first checks the writer still owns
 * `instance` at `epoch`, the fencing rule every durable write of the cluster follows.
 *
 * `FOR SHARE` locks the owner row for the rest of the transaction: a claim by another node
 * (an UPDATE of that row) waits until this write has committed, so the new owner, which
 * restores after its claim, sees every write the old owner was told succeeded. A mismatch
 * rolls the transaction back with `FencedError` before `write` runs.
 *
 * @example
 * await fencedWrite(sql, "outpost", "counter/room", epoch, (tx) => tx`INSERT INTO …`);
 */
export async function fencedWrite<T>(
  sql: Sql,
  schema: string,
  instance: string,
  epoch: number,
  write: (tx: TransactionSql) => Promise<T>,
): Promise<T> {
  return (await sql.begin(async (tx) => {
    const rows = await tx<{ epoch: string }[]>`
      SELECT epoch FROM ${tx(schema)}.owners WHERE instance = ${instance} FOR SHARE`;
    const current = rows[0] === undefined ? undefined : Number(rows[0].epoch);
    if (current !== epoch) throw new FencedError(instance, epoch, current);
    return await write(tx);
  })) as T;
}

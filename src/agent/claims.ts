import { randomUUID } from "node:crypto";
import { processWide } from "./shared.js";

/**
 * Who is running a schedule or queue item, written into its row before it runs so that two
 * processes on one data directory never run the same item, while an item whose process
 * died (`kill -9`, power loss) is taken over after a restart instead of waiting forever.
 * A claim is `<pid>:<random>`: the random part tells this process from an earlier one
 * that had the same pid.
 */
export const CLAIM_TOKEN: string = processWide(
  "claimToken",
  () => `${process.pid}:${randomUUID()}`,
);

/** Is the process that wrote `claim` gone (so its item may be run again)? */
export function isStaleClaim(claim: string): boolean {
  if (claim === CLAIM_TOKEN) return false;
  const pid = Number.parseInt(claim, 10);
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code !== "EPERM";
  }
}

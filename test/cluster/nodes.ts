import { Membership, type MembershipOptions } from "../../src/cluster/membership.js";
import { Ownership } from "../../src/cluster/ownership.js";

/** Lease settings short enough for tests, long enough for a loaded machine. */
export const TEST_TIMING = { leaseMs: 3_000, heartbeatMs: 300, fenceMarginMs: 1_000 } as const;

/** Options of a test node named `id` on `schema`, reaching Postgres at `url`. */
export function nodeOptions(
  url: string,
  schema: string,
  id: string,
  timing: Pick<MembershipOptions, "leaseMs" | "heartbeatMs" | "fenceMarginMs"> = TEST_TIMING,
): MembershipOptions {
  return { postgres: url, schema, nodeId: id, address: `ws://${id}.nodes.test:8787`, ...timing };
}

/** A node in this process: its membership and its ownership. */
export interface TestNode {
  readonly membership: Membership;
  readonly ownership: Ownership;
  close(): Promise<void>;
}

/** Start a node in this process. */
export async function startNode(options: MembershipOptions): Promise<TestNode> {
  const membership = await Membership.start(options);
  const ownership = new Ownership(options, membership);
  return {
    membership,
    ownership,
    async close() {
      await ownership.close();
      await membership.close();
    },
  };
}

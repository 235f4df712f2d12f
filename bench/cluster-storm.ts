/**
 * The reconnect storm on a cluster: three Outpost nodes on one PostgreSQL schema, the
 * clients spread over them (client i on node i mod 3) and over 100 rooms; one node is
 * killed, and every client that loses its connection — those on the dead node, and those
 * on the others whose room the dead node owned (their nodes close them 1013) — comes back
 * through the two survivors, as a load balancer would send them, on the `outpost/client`
 * schedule. Measured: time from the kill until 99% and 100% of them have their room's state
 * again. Outpost only: the other contenders have no cluster mode.
 */
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import postgres from "postgres";
import { migrate } from "../src/cluster/schema.js";
import type { BenchKeys } from "./config.js";
import type { LoadGenerator } from "./load/index.js";
import type { StormOpenResult, StormResult } from "./load/protocol.js";
import { ServerProcess } from "./servers/index.js";

/** The machine's PostgreSQL (trust auth), overridable for other setups. */
export const BENCH_POSTGRES =
  process.env.OUTPOST_BENCH_POSTGRES ?? "postgres://postgres@127.0.0.1:5432/test";

export interface ClusterStormResult {
  clients: number;
  /** Clients that lost their connection when the node died. */
  dropped: number;
  back: number;
  /** Milliseconds from the kill until 99% / 100% of the dropped clients were back. */
  ms99: number | undefined;
  ms100: number | undefined;
  refusals: number;
  codes: Record<string, number>;
  dials: number;
}

export async function clusterStorm(
  load: LoadGenerator,
  keys: BenchKeys,
  options: { clients: number; rooms: number; concurrency: number; timeoutMs: number },
  status: (text: string) => void,
): Promise<ClusterStormResult> {
  const schema = `bench_${randomBytes(6).toString("hex")}`;
  const sql = postgres(BENCH_POSTGRES, { max: 1, onnotice: () => {} });
  const nodes: ServerProcess[] = [];
  try {
    // Migrated once here, so three nodes starting together do not queue on the catalog.
    await migrate(sql, schema);
    for (let i = 0; i < 3; i++) {
      nodes.push(
        await ServerProcess.start("outpost", {
          keys,
          algorithm: "EdDSA",
          failureLimit: true,
          cluster: { postgres: BENCH_POSTGRES, schema },
        }),
      );
    }
    const ports = nodes.map((n) => n.port);
    status(`cluster storm    opening ${options.clients} clients on 3 nodes`);
    const opened = await load.run<StormOpenResult>({
      cmd: "stormOpen",
      contender: "outpost",
      port: ports[0]!,
      ports,
      count: options.clients,
      rooms: options.rooms,
      concurrency: options.concurrency,
    });
    if (opened.opened < options.clients) {
      throw new Error(`only ${opened.opened} of ${options.clients} clients opened`);
    }
    await load.run({ cmd: "stormArm" });
    // The load balancer takes the dead node out: new connections go to the survivors.
    await load.run({ cmd: "stormRoute", ports: ports.slice(1) });
    status("cluster storm    killing one node of three");
    const killedAt = performance.timeOrigin + performance.now();
    await nodes[0]!.kill();
    const r = await load.run<StormResult>({ cmd: "stormWait", timeoutMs: options.timeoutMs });
    const at = (q: number) => r.backAt[Math.max(0, Math.ceil(q * r.dropped) - 1)];
    const since = (t: number | undefined) => (t === undefined ? undefined : t - killedAt);
    return {
      clients: r.clients,
      dropped: r.dropped,
      back: r.back,
      ms99: since(at(0.99)),
      ms100: r.back === r.dropped ? since(r.backAt[r.backAt.length - 1]) : undefined,
      refusals: r.refusals,
      codes: r.codes,
      dials: r.dials,
    };
  } finally {
    await load.run({ cmd: "stormClose" });
    await Promise.all(nodes.map((n) => n.stop()));
    await sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`;
    await sql.end({ timeout: 1 });
  }
}

import { connect, type RawClient } from "../helpers/ws-client.js";
import { sleep, startChildServer, tempDir } from "./helpers.js";

/**
 * The soak: many authenticated connections doing RPC writes and state writes against a
 * server in a child process, sampling the server's memory, then checking from disk (after
 * a restart) that every acknowledged write is there. Used by `scripts/soak.ts` (5,000
 * connections for 5 minutes) and by the CI test (a smaller, 30-second run).
 */
export interface SoakOptions {
  connections: number;
  seconds: number;
  /** Connections per agent instance; every state write is broadcast to the others. */
  perInstance: number;
  /** Operations per second per connection. */
  rate: number;
  /** One operation in `stateEvery` is a state write, the others RPC writes. */
  stateEvery: number;
  /** How often the server's memory is sampled, in ms. */
  sampleMs: number;
  /** Module with `createAuth()` and `tokenFor()`; without it the server runs without auth. */
  authModule?: string;
  log?: (line: string) => void;
}

export interface SoakSample {
  t: number;
  rssMiB: number;
  heapMiB: number;
  connections: number;
  opsPerSecond: number;
}

export interface SoakReport {
  connections: number;
  seconds: number;
  instances: number;
  connectMs: number;
  rpcAcked: number;
  stateWrites: number;
  errors: { rpc: number; state: number; unexpectedClose: number; connect: number };
  latencyMs: { p50: number; p99: number; max: number };
  samples: SoakSample[];
  /** Mean RSS of the second quarter of the run and of the last quarter. */
  rssEarlyMiB: number;
  rssLateMiB: number;
  verify: { keys: number; missingWrites: number; extraWrites: number };
}

interface AuthModule {
  tokenFor(sub: string, agent: string, name: string, ttlSeconds: number): Promise<string>;
}

const mib = (bytes: number) => Math.round((bytes / 1024 / 1024) * 10) / 10;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const log = options.log ?? (() => {});
  const data = tempDir("outpost-soak-");
  const auth =
    options.authModule === undefined
      ? undefined
      : ((await import(options.authModule)) as AuthModule);
  const instances = Math.ceil(options.connections / options.perInstance);
  const errors = { rpc: 0, state: 0, unexpectedClose: 0, connect: 0 };
  let server = await startChildServer({
    dataDir: data.dir,
    ...(options.authModule !== undefined && { authModule: options.authModule }),
  });
  const ttl = options.seconds + 300;
  const urlOf = async (i: number) => {
    const name = `soak-${i % instances}`;
    const path = `ws://127.0.0.1:${server.port}/agents/ledger/${name}`;
    if (auth === undefined) return path;
    return `${path}?token=${await auth.tokenFor(`user-${i}`, "ledger", name, ttl)}`;
  };

  try {
    // Connect in batches: a burst larger than the listen backlog only causes SYN retries.
    const started = Date.now();
    const clients: RawClient[] = [];
    for (let i = 0; i < options.connections; i += 250) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(250, options.connections - i) }, async (_, j) => {
          try {
            return await connect(await urlOf(i + j), {
              handshakeTimeout: 30_000,
              record: false,
            });
          } catch (error) {
            errors.connect++;
            log(`connect ${i + j} failed: ${(error as Error).message}`);
            return undefined;
          }
        }),
      );
      for (const client of batch) if (client !== undefined) clients.push(client);
    }
    const connectMs = Date.now() - started;
    log(`${clients.length} connections open in ${connectMs} ms over ${instances} instances`);

    let stopping = false;
    for (const client of clients) {
      client.closed.then(() => {
        if (!stopping) errors.unexpectedClose++;
      });
    }
    const acked = new Map<string, number>();
    const latencies: number[] = [];
    let rpcAcked = 0;
    let stateWrites = 0;
    let opsSinceSample = 0;

    const loadStarted = Date.now();
    const deadline = loadStarted + options.seconds * 1000;
    const periodMs = 1000 / options.rate;
    const loops = clients.map(async (client, i) => {
      const key = `k${i}`;
      // Spread the connections over the period so the load is even, not in waves.
      await sleep(Math.random() * periodMs);
      let op = 0;
      while (Date.now() < deadline && client.ws.readyState === 1) {
        const t0 = Date.now();
        if (++op % options.stateEvery === 0) {
          client.ws.send(JSON.stringify({ type: "cf_agent_state", state: { by: i, op } }));
          stateWrites++;
        } else {
          try {
            const n = await client.rpc<number>("add", [key], 30_000);
            acked.set(key, n);
            rpcAcked++;
            latencies.push(Date.now() - t0);
          } catch (error) {
            if (!stopping) {
              errors.rpc++;
              if (errors.rpc <= 5) log(`rpc error: ${(error as Error).message}`);
            }
          }
        }
        opsSinceSample++;
        await sleep(Math.max(0, periodMs - (Date.now() - t0)));
      }
    });

    const samples: SoakSample[] = [];
    let lastSample = Date.now();
    const sampler = (async () => {
      while (Date.now() < deadline) {
        await sleep(Math.min(options.sampleMs, Math.max(0, deadline - Date.now())));
        const stats = await server.stats();
        const now = Date.now();
        const sample: SoakSample = {
          t: Math.round((now - loadStarted) / 1000),
          rssMiB: mib(stats.rss),
          heapMiB: mib(stats.heapUsed),
          connections: stats.connections,
          opsPerSecond: Math.round((opsSinceSample * 1000) / (now - lastSample)),
        };
        opsSinceSample = 0;
        lastSample = now;
        samples.push(sample);
        log(
          `t=${sample.t}s rss=${sample.rssMiB} MiB heap=${sample.heapMiB} MiB ` +
            `connections=${sample.connections} ops/s=${sample.opsPerSecond}`,
        );
      }
    })();
    await Promise.all([...loops, sampler]);
    stopping = true;
    errors.state = clients.reduce((n, c) => n + (c.counts.cf_agent_state_error ?? 0), 0);
    const broadcasts = clients.reduce((n, c) => n + (c.counts.cf_agent_state ?? 0), 0);
    log(`${broadcasts} state frames received by clients`);
    await Promise.all(clients.map((c) => c.close()));

    // Restart the server, so what is checked is what reached the disk.
    await server.kill("SIGTERM");
    server = await startChildServer({
      dataDir: data.dir,
      ...(options.authModule !== undefined && { authModule: options.authModule }),
    });
    const stored = new Map<string, number>();
    for (let instance = 0; instance < instances; instance++) {
      const client = await connect(await urlOf(instance));
      for (const row of await client.rpc<Array<{ key: string; n: number }>>("dump", [], 30_000)) {
        stored.set(row.key, row.n);
      }
      await client.close();
    }
    let missingWrites = 0;
    let extraWrites = 0;
    for (const [key, n] of acked) {
      const have = stored.get(key) ?? 0;
      if (have < n) missingWrites += n - have;
      if (have > n) extraWrites += have - n;
    }

    const sorted = latencies.sort((a, b) => a - b);
    const quarter = (q: number) => {
      const part = samples.filter(
        (s) => s.t > (options.seconds * q) / 4 && s.t <= (options.seconds * (q + 1)) / 4,
      );
      const list = part.length > 0 ? part : samples.slice(-1);
      return Math.round((list.reduce((n, s) => n + s.rssMiB, 0) / list.length) * 10) / 10;
    };
    return {
      connections: clients.length,
      seconds: options.seconds,
      instances,
      connectMs,
      rpcAcked,
      stateWrites,
      errors,
      latencyMs: {
        p50: percentile(sorted, 50),
        p99: percentile(sorted, 99),
        max: sorted.at(-1) ?? 0,
      },
      samples,
      rssEarlyMiB: quarter(1),
      rssLateMiB: quarter(3),
      verify: { keys: acked.size, missingWrites, extraWrites },
    };
  } finally {
    await server.kill("SIGTERM");
    data.remove();
  }
}

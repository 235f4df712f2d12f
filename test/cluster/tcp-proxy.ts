import type { AddressInfo } from "node:net";
import { connect, createServer, type Server, type Socket } from "node:net";

/**
 * A TCP proxy the test owns, in front of Postgres, to cut a node off and let it back.
 * `cut("refuse")` destroys every connection and drops new ones at once (Postgres looks
 * down); `cut("blackhole")` keeps sockets open but forwards nothing (a silent partition).
 * After a blackhole, `restore()` lets new connections through while the old ones stay
 * silent forever, like connections stuck on a route that died.
 */
export interface TcpProxy {
  readonly port: number;
  cut(mode?: "refuse" | "blackhole"): void;
  restore(): void;
  /** Connections currently open through the proxy. */
  readonly open: number;
  close(): Promise<void>;
}

/** Listen on 127.0.0.1, port 0, forwarding to `target`. */
export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  let mode: "pass" | "refuse" | "blackhole" = "pass";
  const pairs = new Set<[Socket, Socket]>();
  const silent = new WeakSet<Socket>();
  const server: Server = createServer((client) => {
    if (mode === "refuse") {
      client.destroy();
      return;
    }
    const upstream = connect(target.port, target.host);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    // Data is forwarded by hand so that a blackhole can swallow it.
    if (mode === "blackhole") silent.add(client);
    client.on("data", (chunk) => {
      if (mode === "pass" && !silent.has(client)) upstream.write(chunk);
    });
    upstream.on("data", (chunk) => {
      if (mode === "pass" && !silent.has(client)) client.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    get open() {
      return pairs.size;
    },
    cut(how = "refuse") {
      mode = how;
      for (const [client, upstream] of pairs) {
        if (how === "blackhole") {
          silent.add(client);
        } else {
          client.destroy();
          upstream.destroy();
        }
      }
      if (how === "refuse") pairs.clear();
    },
    restore() {
      mode = "pass";
    },
    async close() {
      mode = "refuse";
      for (const [client, upstream] of pairs) {
        client.destroy();
        upstream.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

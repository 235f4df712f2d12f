/**
 * One node of the node-link benchmark (see bench/link.ts), told its role by the
 * `LINK_BENCH` environment variable and answering over IPC once it listens.
 *
 * - owner: a link endpoint that echoes every stream message and request, plus a plain `ws`
 *   echo server: the direct path a client on the owner would take.
 * - edge: a client-facing `ws` server that carries each client to the owner, either as a
 *   link stream (`/stream`) or as one link request per message (`/request`); asked over
 *   IPC, it also measures the link alone from this process: round trips and small-frame
 *   throughput over a link stream and link requests vs a direct `ws` socket to the owner.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { WebSocket, WebSocketServer } from "ws";
import { LinkPool } from "../src/cluster/link-pool.js";
import { LinkServer } from "../src/cluster/link-server.js";
import { type Channel, roundTrips, socketChannel, throughput } from "./link-measure.js";
import { quantile } from "./stats.js";

interface Role {
  role: "owner" | "edge";
  secret: string;
  owner?: string;
  direct?: string;
}

const role = JSON.parse(process.env.LINK_BENCH ?? "{}") as Role;
const links = new LinkServer({ nodeId: role.role, secret: role.secret });
const wssOptions = { noServer: true, perMessageDeflate: false, clientTracking: false } as const;

async function listen(server: ReturnType<typeof createServer>): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

if (role.role === "owner") {
  links.onStream((stream) => stream.onMessage((data) => stream.send(data)));
  links.onRequest(({ payload }) => ({ payload }));
  const { port: linkPort } = await links.listen();
  const wss = new WebSocketServer(wssOptions);
  const http = createServer();
  http.on("upgrade", (req, socket, head) =>
    wss.handleUpgrade(req, socket, head, (ws) =>
      ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary })),
    ),
  );
  process.send?.({ linkPort, directPort: await listen(http) });
} else {
  await links.listen();
  const pool = new LinkPool(links);
  const link = await pool.get("owner", role.owner ?? "");
  const target = { agent: "bench", name: "room-1" };
  const wss = new WebSocketServer(wssOptions);
  const http = createServer();
  http.on("upgrade", (req, socket, head) =>
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (req.url === "/request") {
        ws.on("message", (data) => {
          link.request(target, data.toString()).then(
            (reply) => ws.send(String(reply.payload)),
            () => ws.close(1013),
          );
        });
        return;
      }
      const stream = link.openStream(target, { connectionId: "bench" });
      stream.onMessage((data) => ws.send(data));
      stream.onClose((code) => ws.close(code === 1000 ? 1000 : 1013));
      ws.on("message", (data, isBinary) =>
        stream.send(isBinary ? (data as Buffer) : data.toString()),
      );
      ws.on("close", () => stream.close(1000));
    }),
  );
  const direct = new WebSocket(role.direct ?? "", { perMessageDeflate: false });
  await new Promise((resolve) => direct.once("open", resolve));
  const stream = link.openStream(target, { connectionId: "bench-alone" });
  let onStream = () => {};
  let onRequest = () => {};
  stream.onMessage(() => onStream());
  const channels: Record<string, Channel> = {
    ws: socketChannel(direct),
    stream: { send: (d) => stream.send(d), onReply: (h) => (onStream = h) },
    request: {
      send: (d) => link.request(target, d).then(() => onRequest()),
      onReply: (h) => (onRequest = h),
    },
  };
  process.on("message", async (message: { calls: number; frames: number; window: number }) => {
    const result: Record<string, { p50: number; p99: number; rate: number }> = {};
    for (const [name, channel] of Object.entries(channels)) {
      const times = await roundTrips(channel, message.calls);
      result[name] = {
        p50: quantile(times, 0.5),
        p99: quantile(times, 0.99),
        rate: await throughput(channel, message.frames, message.window),
      };
    }
    process.send?.({ alone: result });
  });
  for (const channel of Object.values(channels)) await roundTrips(channel, 500);
  process.send?.({ port: await listen(http) });
}
process.on("disconnect", () => process.exit(0));

/**
 * The floor: a `ws` server that verifies the JWT with `jose` and does nothing else. It
 * speaks the same frames as Outpost (identity, state, rpc echo, state broadcast) and
 * refuses the same way (accept, then close 4001), with Outpost's `ws` settings.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { type WebSocket, WebSocketServer } from "ws";
import {
  AGENT,
  identityFrame,
  rpcErrorFrame,
  rpcResultFrame,
  stateFrame,
  UNAUTHORIZED,
} from "../config.js";
import { attach, readConfig } from "./ipc.js";
import { RoomStates } from "./rooms.js";
import { createVerifier } from "./verify.js";

const config = readConfig();
const verifier = await createVerifier(config);
const wss = new WebSocketServer({
  noServer: true,
  maxPayload: 1024 * 1024,
  clientTracking: false,
  perMessageDeflate: false,
});
/** Open connections of each instance (room), for broadcasts. */
const rooms = new Map<string, Set<WebSocket>>();
const states = new RoomStates(config.dataDir);
let connections = 0;

function onMessage(ws: WebSocket, data: Buffer, expiresAt: number, name: string): void {
  let frame: { type?: unknown; id?: unknown; method?: unknown; args?: unknown };
  try {
    frame = JSON.parse(data.toString());
  } catch {
    return;
  }
  if (frame === null || frame.type !== "rpc" || typeof frame.id !== "string") return;
  // Outpost re-checks expiry on every frame; the floor does the same one comparison.
  if (Date.now() >= expiresAt * 1000) {
    ws.close(UNAUTHORIZED, "token expired");
    return;
  }
  const args = Array.isArray(frame.args) ? frame.args : [];
  if (frame.method === "echo") {
    ws.send(rpcResultFrame(frame.id, args[0]));
  } else if (frame.method === "bump") {
    const state = states.bump(name);
    const text = stateFrame(state);
    for (const client of rooms.get(name) ?? []) client.send(text);
    ws.send(rpcResultFrame(frame.id, state.n));
  } else {
    ws.send(rpcErrorFrame(frame.id, `unknown method ${String(frame.method)}`));
  }
}

const http = createServer((_req, res) => res.writeHead(404).end());
http.on("upgrade", (req, socket, head) => {
  socket.on("error", () => socket.destroy());
  const url = new URL(req.url ?? "/", "http://localhost");
  const [, prefix, agent, rawName, extra] = url.pathname.split("/");
  if (prefix !== "agents" || agent !== AGENT || !rawName || extra !== undefined) {
    socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n");
    return;
  }
  const name = decodeURIComponent(rawName);
  verifier.verify(url.searchParams.get("token"), agent, name).then(
    (expiresAt) => {
      if (socket.destroyed) return;
      wss.handleUpgrade(req, socket, head, (ws) => {
        ws.on("error", () => {});
        const clients = rooms.get(name) ?? new Set<WebSocket>();
        rooms.set(name, clients);
        clients.add(ws);
        connections++;
        ws.on("close", () => {
          connections--;
          clients.delete(ws);
        });
        ws.on("message", (data: Buffer) => onMessage(ws, data, expiresAt, name));
        ws.send(identityFrame(name));
        ws.send(stateFrame(states.get(name)));
      });
    },
    () => {
      if (socket.destroyed) return;
      wss.handleUpgrade(req, socket, head, (ws) => {
        ws.on("error", () => {});
        ws.close(UNAUTHORIZED, "Unauthorized");
        setTimeout(() => ws.terminate(), 2_000).unref();
      });
    },
  );
});

http.listen(config.port ?? 0, "127.0.0.1", () => {
  attach(
    (http.address() as AddressInfo).port,
    () => connections,
    async () => {
      for (const clients of rooms.values()) for (const client of clients) client.terminate();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  );
});

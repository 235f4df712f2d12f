/**
 * The peer: Socket.IO with an auth middleware, WebSocket transport only. The token comes in
 * the CONNECT packet's `auth` (the idiomatic place) and is verified with the same `jose`
 * code as the floor; messages carry the same JSON objects as Outpost's frames, RPC is an
 * emit with acknowledgement, and a state change is a room broadcast.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Server } from "socket.io";
import { AGENT, INSTANCE } from "../config.js";
import { attach, readConfig } from "./ipc.js";
import { RoomStates } from "./rooms.js";
import { createVerifier } from "./verify.js";

const config = readConfig();
const verifier = await createVerifier(config);
const http = createServer();
const io = new Server(http, {
  transports: ["websocket"],
  serveClient: false,
  maxHttpBufferSize: 1024 * 1024,
  perMessageDeflate: false,
  httpCompression: false,
});
const states = new RoomStates(config.dataDir);

io.use((socket, next) => {
  const auth = socket.handshake.auth as { token?: unknown };
  const name = typeof socket.handshake.query.name === "string" ? socket.handshake.query.name : "";
  verifier.verify(typeof auth.token === "string" ? auth.token : null, AGENT, name || INSTANCE).then(
    (expiresAt) => {
      socket.data.expiresAt = expiresAt;
      socket.data.name = name || INSTANCE;
      next();
    },
    () => next(new Error("Unauthorized")),
  );
});

type RpcFrame = { type?: unknown; id?: unknown; method?: unknown; args?: unknown };

io.on("connection", (socket) => {
  const name = socket.data.name as string;
  const room = `${AGENT}/${name}`;
  const expiresAt = socket.data.expiresAt as number;
  socket.join(room);
  socket.emit("message", { type: "cf_agent_identity", agent: AGENT, name, stateFollows: true });
  socket.emit("message", { type: "cf_agent_state", state: states.get(name) });
  socket.on("rpc", (frame: RpcFrame, ack: unknown) => {
    if (typeof ack !== "function" || frame === null || typeof frame !== "object") return;
    if (typeof frame.id !== "string") return;
    if (Date.now() >= expiresAt * 1000) {
      socket.disconnect(true);
      return;
    }
    const args = Array.isArray(frame.args) ? frame.args : [];
    if (frame.method === "echo") {
      ack({ type: "rpc", id: frame.id, success: true, result: args[0], done: true });
    } else if (frame.method === "bump") {
      const state = states.bump(name);
      io.to(room).emit("message", { type: "cf_agent_state", state });
      ack({ type: "rpc", id: frame.id, success: true, result: state.n, done: true });
    } else {
      ack({
        type: "rpc",
        id: frame.id,
        success: false,
        error: `unknown method ${String(frame.method)}`,
      });
    }
  });
});

http.listen(config.port ?? 0, "127.0.0.1", () => {
  attach(
    (http.address() as AddressInfo).port,
    () => io.engine.clientsCount,
    async () => {
      io.disconnectSockets(true);
      await new Promise<void>((resolve) => io.close(() => resolve()));
    },
  );
});

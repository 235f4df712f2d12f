/**
 * One load-generator connection: a raw `ws` client that speaks each contender's framing
 * around the same JSON. Outpost and the floor use the JSON as the WebSocket message;
 * Socket.IO wraps it in Engine.IO/Socket.IO packets (`42[...]`, acks `43<id>[...]`, ping
 * `2` → pong `3`), which this client speaks directly so that no client library's cost is
 * counted against a server. Callbacks, not promises: the load generator has one core too.
 */
import WebSocket from "ws";
import { AGENT, type Contender, INSTANCE, UNAUTHORIZED } from "../config.js";

/** A server frame after the contender's framing is removed. */
export interface AppFrame {
  type: string;
  id?: string;
  success?: boolean;
  result?: unknown;
  state?: { n: number };
  [key: string]: unknown;
}

export interface SocketEvents {
  /** Each application frame, identity first. */
  onFrame(socket: BenchSocket, frame: AppFrame): void;
  /** The server refused the token (close 4001, or Socket.IO's CONNECT_ERROR). */
  onRefused(socket: BenchSocket, code: number): void;
  /** The socket closed for any other reason, or failed to connect. */
  onClosed(socket: BenchSocket, code: number): void;
}

export function socketUrl(
  contender: Contender,
  port: number,
  token: string,
  name: string = INSTANCE,
): string {
  if (contender === "socketio") {
    return `ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket&name=${name}`;
  }
  return `ws://127.0.0.1:${port}/agents/${AGENT}/${name}?token=${token}`;
}

export class BenchSocket {
  readonly ws: WebSocket;
  /** Free for the workload: e.g. the send time of the call in flight. */
  sentAt = 0;
  /** Free for the workload: e.g. the index of the connection. */
  index = 0;
  /** The HTTP status when the server answered the upgrade with an error instead of accepting it. */
  httpStatus: number | undefined;
  #nextAck = 0;
  #ended = false;

  constructor(
    readonly contender: Contender,
    port: number,
    readonly token: string,
    readonly events: SocketEvents,
    name?: string,
  ) {
    this.ws = new WebSocket(socketUrl(contender, port, token, name), {
      perMessageDeflate: false,
      handshakeTimeout: 15_000,
    });
    // A refusal by status (e.g. 503) rather than a close code: `ws` reports it as this error,
    // then closes with 1006 like any failed connect.
    this.ws.on("error", (error) => {
      const status = /^Unexpected server response: (\d+)/.exec(error.message);
      if (status !== null) this.httpStatus = Number(status[1]);
    });
    this.ws.on("message", (data: Buffer) => this.#onMessage(data.toString()));
    this.ws.on("close", (code) => {
      if (this.#ended) return;
      this.#ended = true;
      if (code === UNAUTHORIZED) this.events.onRefused(this, code);
      else this.events.onClosed(this, code);
    });
  }

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** Send an RPC request frame (with an acknowledgement id for Socket.IO). */
  call(id: string, method: string, args: unknown[]): void {
    const frame = JSON.stringify({ type: "rpc", id, method, args });
    if (this.contender === "socketio") this.ws.send(`42${this.#nextAck++}["rpc",${frame}]`);
    else this.ws.send(frame);
  }

  close(): void {
    this.#ended = true;
    this.ws.close();
  }

  terminate(): void {
    this.#ended = true;
    this.ws.terminate();
  }

  #onMessage(text: string): void {
    if (this.contender !== "socketio") {
      this.events.onFrame(this, JSON.parse(text) as AppFrame);
      return;
    }
    const engine = text.charCodeAt(0);
    if (engine === 0x32 /* "2" ping */) {
      this.ws.send("3");
    } else if (engine === 0x30 /* "0" open: join the namespace with the token */) {
      this.ws.send(`40${JSON.stringify({ token: this.token })}`);
    } else if (engine === 0x34 /* "4" message */) {
      const packet = text.charCodeAt(1);
      if (packet === 0x32 /* EVENT 42["message",frame] */) {
        const [, frame] = JSON.parse(text.slice(2)) as [string, AppFrame];
        this.events.onFrame(this, frame);
      } else if (packet === 0x33 /* ACK 43<id>[frame] */) {
        const start = text.indexOf("[", 2);
        const [frame] = JSON.parse(text.slice(start)) as [AppFrame];
        this.events.onFrame(this, frame);
      } else if (packet === 0x34 /* CONNECT_ERROR */) {
        this.#ended = true;
        this.ws.close();
        this.events.onRefused(this, UNAUTHORIZED);
      }
      // "40" (CONNECT ok) carries nothing the workloads need: identity follows it.
    }
  }
}

/**
 * Close every socket and resolve once all have closed; one still open 5 s after its close
 * is terminated. How the workloads and the storm let their connections go.
 */
export async function closeSockets(sockets: BenchSocket[]): Promise<void> {
  await Promise.all(
    sockets.map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.ws.readyState === s.ws.CLOSED) return resolve();
          const timer = setTimeout(() => {
            s.terminate();
            resolve();
          }, 5_000);
          s.ws.once("close", () => {
            clearTimeout(timer);
            resolve();
          });
          s.close();
        }),
    ),
  );
}

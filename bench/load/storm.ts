/**
 * The reconnect storm, client side: many authenticated clients spread over rooms, each
 * reconnecting on its own when its socket drops, with the schedule of `outpost/client`
 * (its defaults and its `backoffDelay`, imported, not copied) — the same for every
 * contender. A client is back when it has its room's state as it was before the restart.
 */
import { performance } from "node:perf_hooks";
import {
  backoffDelay,
  type ResolvedReconnectOptions,
  resolveReconnectOptions,
} from "../../src/client/reconnect.js";
import { type Contender, stormRoom } from "../config.js";
import type { StormOpenResult, StormResult, Target } from "./protocol.js";
import { type AppFrame, BenchSocket, closeSockets, type SocketEvents } from "./socket.js";

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes. */
const epochNow = () => performance.timeOrigin + performance.now();

/** Close code of a socket that dropped without a close frame (a killed server, a refused TCP connect). */
const ABNORMAL = 1006;
/** How long no client may drop before the clients back are taken as all there will be. */
const QUIET_MS = 1_500;

interface StormClient {
  index: number;
  room: number;
  token: string;
  socket: BenchSocket | undefined;
  /** As `AgentClient` counts: dials since the last healthy connection. */
  attempt: number;
  openedAt: number;
  /** When it had its state again after the restart (epoch ms), 0 until then. */
  backAt: number;
  /** Whether it has received its room's state on the current socket. */
  ready: boolean;
  /** When its healthy connection dropped (epoch ms), until its first redial. */
  droppedAt: number;
  /** Whether it has lost its connection since the storm was armed. */
  dropped: boolean;
}

export class Storm {
  #clients: StormClient[] = [];
  #target: Target | undefined;
  /** Where clients dial: one port, or the nodes of a cluster (client i to node i mod n). */
  #ports: number[] = [];
  #expected: number[] = [];
  #armed = false;
  #firstCloseAt = 0;
  #back = 0;
  #dropped = 0;
  #lastDropAt = 0;
  #stale = 0;
  #dials = 0;
  #firstDelays: number[] = [];
  #refusals = 0;
  #codes: Record<string, number> = {};
  #onReady: ((client: StormClient, ok: boolean) => void) | undefined;
  #pendingCall: ((n: number) => void) | undefined;
  readonly #retry: ResolvedReconnectOptions = resolveReconnectOptions();
  readonly #events: SocketEvents = {
    onFrame: (s, f) => this.#frame(s, f),
    onRefused: (s, code) => this.#closed(s, code, true),
    onClosed: (s, code) => this.#closed(s, code, false),
  };

  /** Open `tokens.length` clients, client i in room i mod `rooms`, each until it has its state. */
  async open(
    target: Target,
    tokens: readonly string[],
    rooms: number,
    concurrency: number,
  ): Promise<StormOpenResult> {
    this.#target = target;
    this.#ports = target.ports ?? [target.port];
    const started = performance.now();
    this.#clients = tokens.map((token, index) => ({
      index,
      room: index % rooms,
      token,
      socket: undefined,
      attempt: 0,
      openedAt: 0,
      backAt: 0,
      ready: false,
      droppedAt: 0,
      dropped: false,
    }));
    let next = 0;
    let opened = 0;
    let failed = 0;
    await new Promise<void>((resolve) => {
      const launch = () => {
        while (next < this.#clients.length && next - opened - failed < concurrency) {
          this.#dial(this.#clients[next++]!);
        }
        if (opened + failed === this.#clients.length) resolve();
      };
      this.#onReady = (_client, ok) => {
        if (ok) opened++;
        else failed++;
        launch();
      };
      launch();
    });
    this.#onReady = undefined;
    return { opened, failed, elapsedMs: performance.now() - started };
  }

  /**
   * Give each room a state of its own: room r's first client calls `bump` 1 + r mod 3
   * times. Resolves the expected state `n` of every room.
   */
  async seed(rooms: number): Promise<number[]> {
    this.#expected = [];
    for (let room = 0; room < rooms; room++) {
      const client = this.#clients.find((c) => c.room === room && c.ready);
      if (client === undefined) throw new Error(`storm: no client open in room ${room}`);
      let n = 0;
      for (let i = 0; i <= room % 3; i++) {
        n = await new Promise<number>((resolve) => {
          this.#pendingCall = resolve;
          client.socket!.call(`s${room}-${i}`, "bump", []);
        });
      }
      this.#expected[room] = n;
    }
    this.#pendingCall = undefined;
    return this.#expected;
  }

  /**
   * From now on a dropped socket reconnects on the client schedule. Waits first until every
   * connection has been up for `minUptime`, so that each client treats the drop as the end
   * of a healthy connection and starts from its first, shortest delay, as a real one would.
   */
  async arm(): Promise<void> {
    const youngest = Math.max(...this.#clients.map((c) => c.openedAt));
    const wait = youngest + this.#retry.minUptime - epochNow();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait + 50));
    this.#armed = true;
  }

  /**
   * From now on clients dial only these ports, as a load balancer sends new connections only
   * to the nodes it sees alive (client i to the (i + attempt)-th of them).
   */
  route(ports: number[]): void {
    this.#ports = ports;
  }

  /**
   * Resolve once every client that lost its connection is back with its state (and no
   * other has dropped for a moment: in a cluster, clients of a dead owner are closed by
   * their nodes as those notice), or after `timeoutMs` from the first drop.
   */
  wait(timeoutMs: number): Promise<StormResult> {
    return new Promise((resolve) => {
      const started = epochNow();
      const poll = setInterval(() => {
        const now = epochNow();
        const from = this.#firstCloseAt > 0 ? this.#firstCloseAt : started;
        const settled =
          this.#dropped > 0 && this.#back === this.#dropped && now - this.#lastDropAt > QUIET_MS;
        if (settled || now - from > timeoutMs) finish();
      }, 50);
      const finish = () => {
        clearInterval(poll);
        const backAt = this.#clients
          .map((c) => c.backAt)
          .filter((t) => t > 0)
          .sort((a, b) => a - b);
        resolve({
          clients: this.#clients.length,
          dropped: this.#dropped,
          back: this.#back,
          stale: this.#stale,
          dials: this.#dials,
          firstDelays: this.#firstDelays,
          refusals: this.#refusals,
          codes: this.#codes,
          firstCloseAt: this.#firstCloseAt,
          backAt,
        });
      };
    });
  }

  /** Close every client and forget the storm. */
  async close(): Promise<void> {
    this.#armed = false;
    const sockets = this.#clients.map((c) => c.socket).filter((s) => s !== undefined);
    this.#clients = [];
    await closeSockets(sockets);
    this.#back = this.#stale = this.#dials = this.#refusals = this.#firstCloseAt = 0;
    this.#dropped = this.#lastDropAt = 0;
    this.#codes = {};
    this.#firstDelays = [];
  }

  #dial(client: StormClient): void {
    const target = this.#target!;
    client.attempt++;
    client.ready = false;
    if (this.#armed) this.#dials++;
    if (client.droppedAt > 0) {
      this.#firstDelays.push(epochNow() - client.droppedAt);
      client.droppedAt = 0;
    }
    const ports = this.#ports;
    const socket = new BenchSocket(
      target.contender as Contender,
      ports[(client.index + (this.#armed ? client.attempt : 0)) % ports.length]!,
      client.token,
      this.#events,
      stormRoom(client.room),
    );
    socket.index = client.index;
    client.socket = socket;
  }

  #frame(socket: BenchSocket, frame: AppFrame): void {
    const client = this.#clients[socket.index];
    if (client === undefined || client.socket !== socket) return;
    if (frame.type === "rpc") {
      if (frame.success === true) this.#pendingCall?.(frame.result as number);
      return;
    }
    if (frame.type !== "cf_agent_state" || client.ready) return;
    client.ready = true;
    client.openedAt = epochNow();
    if (!this.#armed) {
      this.#onReady?.(client, true);
      return;
    }
    if (client.backAt > 0) return;
    if (frame.state?.n !== this.#expected[client.room]) {
      // Connected, but the room forgot its state: not back in the sense that matters.
      this.#stale++;
      return;
    }
    client.backAt = client.openedAt;
    this.#back++;
  }

  #closed(socket: BenchSocket, code: number, refused: boolean): void {
    const client = this.#clients[socket.index];
    if (client === undefined || client.socket !== socket) return;
    const wasReady = client.ready;
    client.ready = false;
    client.socket = undefined;
    if (!this.#armed) {
      this.#onReady?.(client, false);
      return;
    }
    if (this.#firstCloseAt === 0) this.#firstCloseAt = epochNow();
    if (!client.dropped) {
      client.dropped = true;
      this.#dropped++;
      this.#lastDropAt = epochNow();
    }
    // A server that answered and said no: a close code of its own, or an HTTP status.
    const status = socket.httpStatus;
    if (refused || status !== undefined || (code !== ABNORMAL && !wasReady)) {
      this.#refusals++;
      const key = status !== undefined ? `HTTP ${status}` : String(code);
      this.#codes[key] = (this.#codes[key] ?? 0) + 1;
    }
    // As `AgentClient` does: a connection that stayed up for minUptime resets the backoff,
    // and the next delay is the backoff of the attempts made since (at least the first).
    if (wasReady && epochNow() - client.openedAt >= this.#retry.minUptime) client.attempt = 0;
    if (wasReady) client.droppedAt = epochNow();
    const delay = backoffDelay(Math.max(1, client.attempt), this.#retry);
    setTimeout(() => {
      if (this.#armed && client.socket === undefined) this.#dial(client);
    }, delay);
  }
}

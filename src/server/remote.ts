import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Logger } from "pino";
import type { WebSocket } from "ws";
import {
  type ConnectionLimits,
  type ConnectionSocket,
  ServerConnection,
} from "../agent/connection.js";
import { ConnectionAuth } from "../agent/connection-auth.js";
import { callOnInstance } from "../agent/get-agent-by-name.js";
import type { RemoteAgent } from "../agent/hosts.js";
import { InstanceLimitError, type InstanceRegistry } from "../agent/registry.js";
import type { AuthPolicy, AuthSession } from "../auth/policy.js";
import { AgentCallError } from "../client/errors.js";
import type { LinkStream, LinkStreamMeta } from "../cluster/link-stream.js";
import type { ClusterNode } from "../cluster/node.js";
import type { NodeLink } from "../cluster/node-link.js";
import { CloseCode } from "../protocol/close-codes.js";
import type { RemoteAdmission } from "./admission.js";
import { redactUrl } from "./logger.js";
import type { Refusals } from "./refusals.js";

/** What the edge tells the owner about a connection it admitted. */
interface CarriedMeta {
  connectionId: string;
  /** The verified session (claims, expiry, fingerprint); absent without `auth`. */
  session?: AuthSession;
  /** The upgrade URL as the client sent it (`ctx.request.url`), credentials included. */
  url: string;
  headers: Record<string, string>;
  remoteAddress?: string;
}

/** An HTTP request relayed to the owner. */
interface RelayedRequest {
  method: string;
  url: string;
  headers: Array<[string, string]>;
  session?: AuthSession;
}

/** A server-side call (`getAgentByName`) relayed to the owner. */
interface RelayedCall {
  kind: "call";
  method: string;
  args: unknown[];
}

/** The owner's answer to a relayed call. */
type CallAnswer = { ok: true; result: unknown } | { ok: false; error: string };

/** The owner's answer to a relayed request. */
interface RelayedResponse {
  status: number;
  headers: Array<[string, string]>;
}

/**
 * Close codes a WebSocket may send; anything else a stream reports (a dead link) becomes
 * "try again", so the client reconnects and lands on the instance's new owner.
 */
function sendableCode(code: number): number {
  if (
    code === 1000 ||
    (code >= 1001 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006)
  )
    return code;
  if (code >= 3000 && code <= 4999) return code;
  return CloseCode.TryAgainLater;
}

/** A stream over a node link, as a connection's socket on the owner. */
class StreamSocket implements ConnectionSocket {
  readonly #stream: LinkStream;

  constructor(stream: LinkStream) {
    this.#stream = stream;
  }

  get readyState(): number {
    return this.#stream.isOpen ? 1 : 3;
  }

  get bufferedAmount(): number {
    return this.#stream.bufferedAmount;
  }

  send(message: string | ArrayBuffer | ArrayBufferView): void {
    if (typeof message === "string") this.#stream.send(message);
    else if (message instanceof ArrayBuffer) this.#stream.send(Buffer.from(message));
    else this.#stream.send(Buffer.from(message.buffer, message.byteOffset, message.byteLength));
  }

  close(code?: number, reason?: string): void {
    this.#stream.close(code ?? 1000, reason ?? "");
  }

  terminate(): void {
    this.#stream.close(CloseCode.TryAgainLater, "");
  }
}

/**
 * Cluster mode, between the admission road and the node links. On the node a client landed
 * on (its edge), a connection or request admitted for an instance another node owns is
 * carried there: one stream per socket, one request per HTTP request. On the owner, what
 * arrives over a link is attached to the instance like a local client, its credentials
 * re-checked now that the instance is ready.
 */
export class RemoteBridge {
  readonly #node: Promise<ClusterNode>;
  readonly #registry: InstanceRegistry;
  readonly #refusals: Refusals;
  readonly #connections: Set<ServerConnection>;
  readonly #limits: ConnectionLimits;
  readonly #maxConnections: number;
  readonly #auth: () => Promise<AuthPolicy | undefined>;
  readonly #credentialParams: () => readonly string[];
  readonly #logger: Logger;
  /** Client sockets this node carries to other nodes, for heartbeats and shutdown. */
  readonly #carried = new Set<WebSocket>();
  readonly #quiet = new WeakSet<WebSocket>();

  constructor(options: {
    node: Promise<ClusterNode>;
    registry: InstanceRegistry;
    refusals: Refusals;
    connections: Set<ServerConnection>;
    limits: ConnectionLimits;
    maxConnectionsPerInstance: number;
    auth: () => Promise<AuthPolicy | undefined>;
    credentialParams: () => readonly string[];
    logger: Logger;
  }) {
    this.#node = options.node;
    this.#registry = options.registry;
    this.#refusals = options.refusals;
    this.#connections = options.connections;
    this.#limits = options.limits;
    this.#maxConnections = options.maxConnectionsPerInstance;
    this.#auth = options.auth;
    this.#credentialParams = options.credentialParams;
    this.#logger = options.logger;
  }

  /** The link to an admission's owner, before the client's handshake is completed. */
  async link(admitted: Pick<RemoteAdmission, "owner">): Promise<NodeLink> {
    const node = await this.#node;
    return node.pool.get(admitted.owner.nodeId, admitted.owner.address);
  }

  // --- the edge ---

  /** Pipe an accepted client socket to the owner over `link`, both ways, close for close. */
  carry(
    ws: WebSocket,
    req: IncomingMessage,
    url: URL,
    admitted: RemoteAdmission,
    link: NodeLink,
  ): void {
    const meta: CarriedMeta = {
      connectionId: randomUUID(),
      url: url.href,
      headers: plainHeaders(req.headers),
      ...(admitted.session !== undefined && { session: admitted.session }),
      ...(req.socket.remoteAddress !== undefined && { remoteAddress: req.socket.remoteAddress }),
    };
    let stream: LinkStream;
    try {
      stream = link.openStream(
        { agent: admitted.agent, name: admitted.name },
        meta as unknown as LinkStreamMeta,
      );
    } catch {
      ws.close(CloseCode.TryAgainLater, "agent unavailable");
      return;
    }
    this.#carried.add(ws);
    ws.on("error", () => {});
    ws.on("message", (data: Buffer, isBinary) => {
      this.#quiet.delete(ws);
      // A client that sends faster than the owner takes is paused, not buffered.
      if (!stream.send(isBinary ? data : data.toString("utf8"))) ws.pause();
    });
    ws.on("pong", () => this.#quiet.delete(ws));
    stream.onDrain(() => ws.resume());
    stream.onMessage((data) => {
      if (ws.readyState !== 1) return;
      if (ws.bufferedAmount > this.#limits.maxBufferedBytes) {
        ws.terminate();
        return;
      }
      ws.send(data);
    });
    stream.onClose((code, reason) => {
      if (ws.readyState <= 1) ws.close(sendableCode(code), reason);
    });
    ws.on("close", (code, reason) => {
      this.#carried.delete(ws);
      stream.close(sendableCode(code), reason.toString());
    });
  }

  /** Relay an admitted HTTP request to the owner; its answer comes back as a `Response`. */
  async relay(
    admitted: Pick<RemoteAdmission, "agent" | "name" | "owner" | "session">,
    request: Request,
  ): Promise<Response> {
    const link = await this.link(admitted);
    const body =
      request.method === "GET" || request.method === "HEAD"
        ? undefined
        : new Uint8Array(await request.arrayBuffer());
    const payload: RelayedRequest = {
      method: request.method,
      url: request.url,
      headers: [...request.headers],
      ...(admitted.session !== undefined && { session: admitted.session }),
    };
    const reply = await link.request(
      { agent: admitted.agent, name: admitted.name },
      payload,
      body === undefined ? {} : { body },
    );
    const answer = reply.payload as RelayedResponse;
    const bytes =
      reply.body === undefined || answer.status === 204 || answer.status === 304
        ? null
        : Buffer.from(reply.body);
    return new Response(bytes, {
      status: answer.status,
      headers: answer.headers,
    });
  }

  /** Server-side calls to an instance `owner` holds (`getAgentByName` in cluster mode). */
  agentOn(owner: { nodeId: string; address: string }, agent: string, name: string): RemoteAgent {
    const target = { agent, name };
    const link = async () => (await this.#node).pool.get(owner.nodeId, owner.address);
    return {
      call: async (method, args) => {
        const call: RelayedCall = { kind: "call", method, args };
        const reply = await (await link()).request(target, call);
        const answer = reply.payload as CallAnswer;
        if (!answer.ok) throw new AgentCallError("remote_error", method, answer.error);
        return answer.result;
      },
      // Trusted server code: no session travels with it, as on one node.
      fetch: (request) => this.relay({ agent, name, owner, session: undefined }, request),
    };
  }

  /** One heartbeat tick for carried sockets: drop those that missed the previous ping. */
  heartbeat(): number {
    let dropped = 0;
    for (const ws of this.#carried) {
      if (this.#quiet.has(ws)) {
        ws.terminate();
        dropped++;
        continue;
      }
      this.#quiet.add(ws);
      ws.ping();
    }
    return dropped;
  }

  /** Close every carried socket (shutdown). */
  closeAll(code: number, reason: string): void {
    for (const ws of this.#carried) ws.close(code, reason);
  }

  // --- the owner ---

  /** Take connections and requests other nodes carry to this one. */
  async serve(): Promise<void> {
    const node = await this.#node;
    node.links.onStream((stream, info) =>
      this.#attach(stream, info.target, info.meta as unknown as CarriedMeta),
    );
    node.links.onRequest(async ({ target, payload, body }) => {
      if ((payload as { kind?: string }).kind === "call") {
        return { payload: await this.#call(target, payload as RelayedCall) };
      }
      const response = await this.#answer(target, payload as RelayedRequest, body);
      const bytes = new Uint8Array(await response.arrayBuffer());
      const answer: RelayedResponse = { status: response.status, headers: [...response.headers] };
      return { payload: answer, body: bytes };
    });
  }

  async #owned(agent: string, name: string): Promise<boolean> {
    const node = await this.#node;
    const claim = await node.place(agent, name);
    return claim.owned;
  }

  async #attach(
    stream: LinkStream,
    target: { agent: string; name: string },
    meta: CarriedMeta,
  ): Promise<void> {
    try {
      if (!(await this.#owned(target.agent, target.name))) {
        // It moved meanwhile: the client reconnects and lands on the new owner.
        stream.close(CloseCode.TryAgainLater, "agent moved");
        return;
      }
      const instance = await this.#registry.get(target.agent, target.name);
      const policy = await this.#auth();
      let auth: ConnectionAuth | undefined;
      if (policy !== undefined) {
        const session = meta.session;
        if (session === undefined) {
          stream.close(CloseCode.Unauthorized, "token missing");
          this.#registry.release(instance);
          return;
        }
        // The edge checked; time passed while the instance started here.
        if (policy.isRevoked(session)) {
          stream.close(CloseCode.Revoked, "token revoked");
          this.#registry.release(instance);
          return;
        }
        if (session.expiresAt !== undefined && Date.now() >= session.expiresAt) {
          stream.close(CloseCode.Unauthorized, "token expired");
          this.#registry.release(instance);
          return;
        }
        const url = new URL(meta.url);
        auth = new ConnectionAuth(
          policy,
          session,
          {
            agent: target.agent,
            name: target.name,
            path: url.pathname,
            origin: meta.headers.origin ?? null,
            remoteAddress: meta.remoteAddress,
          },
          this.#refusals.record,
        );
      }
      if (instance.connectionCount >= this.#maxConnections) {
        stream.close(CloseCode.TryAgainLater, "too many connections");
        this.#registry.release(instance);
        return;
      }
      const params = this.#credentialParams();
      const connection = new ServerConnection({
        id: meta.connectionId,
        socket: new StreamSocket(stream),
        uri: () => redactUrl(meta.url, params),
        remoteAddress: meta.remoteAddress ?? "unknown",
        auth,
        limits: this.#limits,
        ...(instance.gate !== undefined && { gate: instance.gate }),
        onTaskError: instance.reportTaskError,
      });
      this.#connections.add(connection);
      stream.onMessage((data) => {
        if (typeof data === "string") instance.receive(connection, Buffer.from(data), false);
        else instance.receive(connection, data, true);
      });
      stream.onClose((code, reason) => {
        this.#connections.delete(connection);
        instance.detach(connection, code, reason);
      });
      instance.attach(connection, () => new Request(meta.url, { headers: meta.headers }));
    } catch (error) {
      this.#logger.warn(
        { err: error, agent: target.agent },
        "could not attach a carried connection",
      );
      stream.close(
        error instanceof InstanceLimitError ? CloseCode.TryAgainLater : CloseCode.InternalError,
        "",
      );
    }
  }

  async #call(target: { agent: string; name: string }, call: RelayedCall): Promise<CallAnswer> {
    if (!(await this.#owned(target.agent, target.name))) {
      return { ok: false, error: "agent unavailable; try again" };
    }
    const instance = await this.#registry.get(target.agent, target.name);
    try {
      const result = await instance.track(() => callOnInstance(instance, call.method, call.args));
      // The answer leaves only once what the call changed is durable.
      await instance.gate?.barrier();
      return { ok: true, result };
    } catch (error) {
      return { ok: false, error: error instanceof Error ? error.message : "Internal error" };
    } finally {
      this.#registry.release(instance);
    }
  }

  async #answer(
    target: { agent: string; name: string },
    relayed: RelayedRequest,
    body: Buffer | undefined,
  ): Promise<Response> {
    try {
      if (!(await this.#owned(target.agent, target.name))) {
        return Response.json(
          { error: "owner_unavailable" },
          { status: 503, headers: { "retry-after": "1" } },
        );
      }
      const instance = await this.#registry.get(target.agent, target.name);
      const request = new Request(relayed.url, {
        method: relayed.method,
        headers: relayed.headers,
        ...(body !== undefined && body.length > 0 && { body: new Uint8Array(body) }),
      });
      try {
        return await instance.fetch(request, relayed.session?.claims);
      } finally {
        this.#registry.release(instance);
      }
    } catch (error) {
      this.#logger.error({ err: error, agent: target.agent }, "relayed request failed");
      return Response.json({ error: "internal_error" }, { status: 500 });
    }
  }
}

function plainHeaders(raw: IncomingMessage["headers"]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (value === undefined) continue;
    out[key] = Array.isArray(value) ? value.join(", ") : value;
  }
  return out;
}

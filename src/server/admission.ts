import type { Logger } from "pino";
import type { RefusalReporter } from "../agent/connection-auth.js";
import type { AgentInstance } from "../agent/instance.js";
import { InstanceLimitError, type InstanceRegistry } from "../agent/registry.js";
import { AuthError, isAuthError } from "../auth/errors.js";
import type { AuthPolicy, AuthSession, HeaderReader } from "../auth/policy.js";
import { agentNameToKebab } from "../protocol/frames.js";
import type { CustomRoutes } from "./custom-routes.js";
import type { Route, Router } from "./router.js";

/** What the pipeline needs to know about an upgrade or a request: headers only, no body. */
export interface AdmissionRequest {
  url: URL;
  headers: HeaderReader;
  /** `undefined` when the host could not say (fetch-style hosts). */
  remoteAddress: string | undefined;
  websocket: boolean;
  /** True once the client has gone away; checked after every wait. */
  gone?: () => boolean;
  /** Where it goes, when the adapter already asked the server's `route` function. */
  route?: Route;
}

/** What every admission carries, wherever its instance runs. */
interface AdmittedBase {
  agent: string;
  name: string;
  /** Path after the instance name (`""` or `/sub/path`). */
  rest: string;
  policy: AuthPolicy | undefined;
  session: AuthSession | undefined;
  /**
   * Give back what admission holds (the connection slot, the instance): after the socket
   * is attached, or when the caller does not use the admission after all. Idempotent.
   */
  release(): void;
}

/** Admitted, with its instance started and held here. */
export interface LocalAdmission extends AdmittedBase {
  kind: "local";
  instance: AgentInstance;
}

/** Admitted, for an instance another node of the cluster owns: carry it there. */
export interface RemoteAdmission extends AdmittedBase {
  kind: "remote";
  owner: { nodeId: string; address: string };
}

export type Admitted = LocalAdmission | RemoteAdmission;

/** Where an instance runs, in cluster mode: here (this node owns it) or on `owner`. */
export type Placement =
  | { here: true }
  | { here: false; owner: { nodeId: string; address: string } };

/** When every instance slot is busy, a client should look again after about this long. */
const INSTANCE_RETRY_MS = 5_000;
/** When an instance's owner cannot be reached, about when it will have moved. */
const OWNER_RETRY_MS = 2_000;

const NOT_READY: unique symbol = Symbol("not ready");

interface Pending {
  session: AuthSession;
  revoked: boolean;
  /** Where it sits in `#pending`. */
  slot: number;
}

/**
 * The one road every WebSocket upgrade and every HTTP request to an agent takes:
 *
 *   route → shutting down? → authenticate (origin, failed-attempt limit, token, scope for
 *   the action) → connection slot (sockets) → get or start the instance → re-check
 *   revocation and expiry (time passed while the instance started) → admitted
 *
 * Size limits and handshake checks come before it, in the adapters, because they are
 * about the transport. Every refusal is an `AuthError`, reported here exactly once; the
 * adapters only write its wire form. Nothing after a refusal runs: a refused client
 * starts no instance and opens no database.
 */
export class Admission {
  readonly #router: Router;
  readonly #custom: CustomRoutes | undefined;
  readonly #registry: InstanceRegistry;
  readonly #auth: () => Promise<AuthPolicy | undefined>;
  readonly #closing: () => boolean;
  readonly #maxConnections: number;
  readonly #report: RefusalReporter;
  readonly #logger: Logger;
  readonly #place: ((agent: string, name: string) => Promise<Placement>) | undefined;
  /** Connection slots taken by sockets being admitted, per instance. */
  readonly #reserved = new Map<string, number>();
  /**
   * Sessions between authentication and attach, so `revoke()` finds and counts them. An
   * array each entry knows its place in: adding and removing one hashes nothing (a Set's
   * add and delete were among the costliest lines of a connect's admission, profiled).
   */
  readonly #pending: Pending[] = [];
  /** Unknown agent names already logged, so a misconfigured client logs its miss once. */
  readonly #missesLogged = new Set<string>();
  /** The auth policy once `auth()` has resolved. */
  #policy: AuthPolicy | undefined | typeof NOT_READY = NOT_READY;

  constructor(options: {
    router: Router;
    /** The server's own `route` function, for addresses outside the prefix. */
    custom?: CustomRoutes;
    registry: InstanceRegistry;
    auth: () => Promise<AuthPolicy | undefined>;
    closing: () => boolean;
    maxConnectionsPerInstance: number;
    report: RefusalReporter;
    logger: Logger;
    /** Cluster mode: find or claim the owner of an instance. */
    place?: (agent: string, name: string) => Promise<Placement>;
  }) {
    this.#router = options.router;
    this.#custom = options.custom;
    this.#registry = options.registry;
    this.#auth = options.auth;
    this.#closing = options.closing;
    this.#maxConnections = options.maxConnectionsPerInstance;
    this.#report = options.report;
    this.#logger = options.logger;
    this.#place = options.place;
  }

  /**
   * Admit `request`, or throw its refusal (an `AuthError`, already counted and logged).
   * Resolves `null` when the client went away meanwhile: there is nobody to answer.
   */
  async admit(request: AdmissionRequest): Promise<Admitted | null> {
    let route = request.route ?? this.#router.match(request.url.pathname);
    if (route.kind === "not-found" && request.route === undefined && this.#custom !== undefined) {
      route = (await this.#custom.resolve(request)) ?? route;
    }
    let pending: Pending | undefined;
    let releaseSlot: (() => void) | undefined;
    try {
      if (route.kind === "not-found") throw new AuthError("not_found");
      if (route.kind === "unknown-agent") throw this.#unknownAgent(route.agent);
      if (route.kind === "bad-name") throw new AuthError("bad_instance_name", route.reason);
      if (route.kind === "route-failed") throw new AuthError("internal_error");
      if (this.#closing()) throw new AuthError("shutting_down");

      // Resolved once; from then on no request waits a turn for it.
      if (this.#policy === NOT_READY) this.#policy = await this.#auth();
      const policy = this.#policy;
      let session: AuthSession | undefined;
      if (policy !== undefined) {
        session = await policy.authenticate({
          agent: route.agent,
          name: route.name,
          url: request.url,
          headers: request.headers,
          remoteAddress: request.remoteAddress,
          websocket: request.websocket,
        });
        // The scope for the action itself: watching over a socket, or an HTTP request.
        policy.authorize(session, request.websocket ? "connect" : "http");
        pending = { session, revoked: false, slot: this.#pending.length };
        this.#pending.push(pending);
      }
      if (request.gone?.()) return null;

      if (this.#place !== undefined) {
        let placement: Placement;
        try {
          placement = await this.#place(route.agent, route.name);
        } catch (error) {
          this.#logger.warn({ err: error, agent: route.agent }, "no owner for the instance");
          throw new AuthError("owner_unavailable", undefined, { retryAfterMs: OWNER_RETRY_MS });
        }
        if (!placement.here) {
          // The owner re-checks once its instance is ready; nothing starts here.
          if (session !== undefined && policy?.isRevoked(session)) {
            throw new AuthError("token_revoked");
          }
          if (request.gone?.()) return null;
          return {
            kind: "remote",
            agent: route.agent,
            name: route.name,
            rest: route.rest,
            owner: placement.owner,
            policy,
            session,
            release: () => {},
          };
        }
      }

      if (request.websocket) releaseSlot = this.#reserve(route.agent, route.name);

      // A running instance is taken at once; only a start is waited for.
      const instance =
        this.#registry.take(route.agent, route.name) ??
        (await this.#start(route.agent, route.name));
      let held = true;
      const slot = releaseSlot;
      releaseSlot = undefined;
      const release = () => {
        slot?.();
        if (held) this.#registry.release(instance);
        held = false;
      };
      try {
        // onStart may have taken a while: the credentials may be gone by now.
        if (session !== undefined && policy !== undefined) {
          if (pending?.revoked || policy.isRevoked(session)) throw new AuthError("token_revoked");
          if (session.expiresAt !== undefined && Date.now() >= session.expiresAt) {
            throw new AuthError("token_expired");
          }
        }
        if (this.#closing()) throw new AuthError("shutting_down");
      } catch (error) {
        release();
        throw error;
      }
      if (request.gone?.()) {
        release();
        return null;
      }
      return {
        kind: "local",
        agent: route.agent,
        name: route.name,
        rest: route.rest,
        instance,
        policy,
        session,
        release,
      };
    } catch (error) {
      releaseSlot?.();
      const refusal = isAuthError(error) ? error : internal(error, this.#logger);
      this.#report(refusal, {
        agent: route.kind === "agent" ? route.agent : undefined,
        name: route.kind === "agent" ? route.name : undefined,
        remoteAddress: request.remoteAddress,
        origin: request.headers.get("origin"),
        url: request.url,
      });
      throw refusal;
    } finally {
      if (pending !== undefined) this.#unpend(pending);
    }
  }

  /** Take `pending` out of `#pending`: the last entry moves into its place. */
  #unpend(pending: Pending): void {
    const last = this.#pending.pop()!;
    if (last === pending) return;
    this.#pending[pending.slot] = last;
    last.slot = pending.slot;
  }

  /** Get or start the instance, as a refusal when it cannot run. */
  async #start(agent: string, name: string): Promise<AgentInstance> {
    try {
      return await this.#registry.get(agent, name);
    } catch (error) {
      throw error instanceof InstanceLimitError
        ? new AuthError("too_many_instances", undefined, { retryAfterMs: INSTANCE_RETRY_MS })
        : new AuthError("agent_failed_to_start");
    }
  }

  /**
   * Mark sessions still being admitted that `isRevoked` now matches, so they are refused at
   * the re-check; returns how many.
   */
  revokePending(isRevoked: (session: AuthSession) => boolean): number {
    let count = 0;
    for (const pending of this.#pending) {
      if (!pending.revoked && isRevoked(pending.session)) {
        pending.revoked = true;
        count++;
      }
    }
    return count;
  }

  /**
   * Take one of the instance's connection slots for a socket being admitted. The caller
   * gives it back when the socket is attached (then the instance counts it) or closes,
   * whichever comes first, so a handshake that never completes cannot keep it.
   */
  #reserve(agent: string, name: string): () => void {
    const key = `${agent}/${name}`;
    const reserved = this.#reserved.get(key) ?? 0;
    const open = (this.#registry.peek(agent, name)?.connectionCount ?? 0) + reserved;
    if (open >= this.#maxConnections) throw new AuthError("too_many_connections");
    this.#reserved.set(key, reserved + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const count = (this.#reserved.get(key) ?? 1) - 1;
      if (count <= 0) this.#reserved.delete(key);
      else this.#reserved.set(key, count);
    };
  }

  #unknownAgent(asked: string): AuthError {
    const known = this.#router.agents;
    if (!this.#missesLogged.has(asked) && this.#missesLogged.size < 100) {
      this.#missesLogged.add(asked);
      this.#logger.warn(
        { event: "unknown_agent", asked: asked.slice(0, 64), agents: known },
        "a client asked for an agent this server does not have",
      );
    }
    // A class name where its URL name belongs (`ChatRoom` for `chat-room`) is the usual slip.
    const kebab = agentNameToKebab(asked);
    const hint = known.includes(kebab)
      ? `; did you mean ${kebab}?`
      : `; this server has: ${known.join(", ")}`;
    return new AuthError("unknown_agent", `unknown agent ${asked.slice(0, 40)}${hint}`);
  }
}

function internal(error: unknown, logger: Logger): AuthError {
  logger.error({ err: error }, "admission failed");
  return new AuthError("internal_error");
}

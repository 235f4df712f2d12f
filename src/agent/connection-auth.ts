import { type AuthError, isAuthError } from "../auth/errors.js";
import type { AuthAction, AuthPolicy, AuthRequest, AuthSession } from "../auth/policy.js";

/** Where a refusal is counted and logged: one counter and one log line for every path. */
export type RefusalReporter = (refusal: AuthError, context: RefusalContext) => void;

/** What a refusal's log line says about the request, never the credential itself. */
export interface RefusalContext {
  agent?: string;
  name?: string;
  remoteAddress?: string;
  origin?: string | null;
  /** Logged redacted. */
  url: URL | string;
}

/** What an in-band refresh needs to ask the auth layer again; kept small and token-free. */
export interface AuthFacts {
  agent: string;
  name: string;
  /** Path of the request URL, without the query (which may hold the token). */
  path: string;
  origin: string | null;
  remoteAddress: string | undefined;
}

/**
 * One connection's credentials: the verified session, the facts a refresh needs, and the
 * questions the connection asks before each action. Owned by the connection; nothing else
 * keeps auth state for it.
 */
export class ConnectionAuth {
  #session: AuthSession;
  readonly #policy: AuthPolicy;
  readonly #report: RefusalReporter;
  // The facts as fields of their own: one object fewer for every live connection.
  readonly #agent: string;
  readonly #name: string;
  readonly #path: string;
  readonly #origin: string | null;
  readonly #remoteAddress: string | undefined;

  constructor(policy: AuthPolicy, session: AuthSession, facts: AuthFacts, report: RefusalReporter) {
    this.#policy = policy;
    this.#session = session;
    this.#report = report;
    this.#agent = facts.agent;
    this.#name = facts.name;
    this.#path = facts.path;
    this.#origin = facts.origin;
    this.#remoteAddress = facts.remoteAddress;
  }

  get session(): AuthSession {
    return this.#session;
  }

  /** Milliseconds since the epoch at which the current credentials run out. */
  get expiresAt(): number | undefined {
    return this.#session.expiresAt;
  }

  get revoked(): boolean {
    return this.#policy.isRevoked(this.#session);
  }

  /** `undefined` when the session may do `action` now, else the refusal (already reported). */
  check(action: AuthAction, uri: string): AuthError | undefined {
    try {
      this.#policy.authorize(this.#session, action);
      return undefined;
    } catch (error) {
      const refusal = asAuthError(error);
      this.#report(refusal, this.#context(uri));
      return refusal;
    }
  }

  /** Count and log an expiry noticed by the connection's timer. */
  reportExpired(refusal: AuthError, uri: string): void {
    this.#report(refusal, this.#context(uri));
  }

  /**
   * Verify `token` as the connection's next credentials (same subject, same scope). The
   * session changes only when it verifies; a refusal is reported and rethrown.
   */
  async refresh(token: string, uri: string): Promise<AuthSession> {
    try {
      const next = await this.#policy.refresh(this.#session, token, this.#request());
      this.#session = next;
      return next;
    } catch (error) {
      const refusal = asAuthError(error);
      this.#report(refusal, this.#context(uri));
      throw refusal;
    }
  }

  #request(): AuthRequest {
    const headers = new Headers();
    if (this.#origin !== null) headers.set("origin", this.#origin);
    return {
      agent: this.#agent,
      name: this.#name,
      url: new URL(this.#path, "http://localhost"),
      headers,
      remoteAddress: this.#remoteAddress ?? "unknown",
      websocket: true,
    };
  }

  #context(uri: string): RefusalContext {
    return {
      agent: this.#agent,
      name: this.#name,
      remoteAddress: this.#remoteAddress,
      origin: this.#origin,
      url: uri,
    };
  }
}

function asAuthError(error: unknown): AuthError {
  if (isAuthError(error)) return error;
  // The policy contract says only AuthErrors are thrown; anything else is our bug, not
  // the client's, and must not leak its message.
  throw error;
}

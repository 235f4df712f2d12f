import type { AuthPolicy, AuthRequest } from "../auth/policy.js";

/**
 * How many times the configured failed-attempt limit this machine's own clients get in
 * `outpost dev`: a developer retyping tokens should not lock themselves out for a minute.
 */
export const DEV_LOOPBACK_LIMIT_FACTOR = 50;

/** The module's `auth`, ready to serve, or the one line that says why it cannot be built. */
export type DevAuth = { ok: true; policy: AuthPolicy | undefined } | { ok: false; error: string };

/**
 * Build the module's exported `auth` now, at startup. A key set is loaded lazily, so a
 * missing secret or key file would otherwise surface as a 1011 for every client, forever;
 * here it is one line naming the cause. `source` is the module's text, read to name the
 * environment variable that is not set.
 */
export async function prepareDevAuth(exported: unknown, source: string): Promise<DevAuth> {
  let policy: AuthPolicy;
  try {
    policy = (await exported) as AuthPolicy;
  } catch (error) {
    return { ok: false, error: cannotBuild(error, source) };
  }
  if (policy === undefined || policy === null) return { ok: true, policy: undefined };
  if (typeof policy.authenticate !== "function") {
    return {
      ok: false,
      error: "the exported `auth` is not an auth policy (e.g. tokenAuth({ keys }))",
    };
  }
  try {
    // A request without credentials: a working policy refuses it with an AuthError once
    // its keys are loaded; anything else is the keys failing.
    await policy.authenticate(probeRequest());
  } catch (error) {
    if (!isRefusal(error)) return { ok: false, error: cannotBuild(error, source) };
  }
  return { ok: true, policy };
}

/**
 * An `AuthError`, recognised by shape: the user's module may load its own copy of
 * `outpost/auth` (tsx compiles it again for a CommonJS project), so `instanceof` would miss.
 */
function isRefusal(error: unknown): boolean {
  const { name, closeCode } = (error ?? {}) as { name?: unknown; closeCode?: unknown };
  return name === "AuthError" && typeof closeCode === "number";
}

function probeRequest(): AuthRequest {
  return {
    agent: "outpost-dev-startup-check",
    name: "startup",
    url: new URL("http://127.0.0.1/"),
    headers: new Headers(),
    remoteAddress: "outpost-dev-startup-check",
    websocket: true,
  };
}

function cannotBuild(error: unknown, source: string): string {
  const message = error instanceof Error ? error.message : String(error);
  const unset = unsetEnvironmentVariables(source);
  if (unset.length > 0) {
    const names = unset.join(", ");
    return `${names} ${unset.length === 1 ? "is" : "are"} not set, so the exported auth cannot be built (${message})`;
  }
  return `the exported auth cannot be built: ${message}`;
}

/** `process.env.NAME` (or `process.env["NAME"]`) references in `source` that are unset or empty. */
export function unsetEnvironmentVariables(
  source: string,
  env: NodeJS.ProcessEnv = process.env,
): string[] {
  const names = new Set<string>();
  for (const match of source.matchAll(
    /process\.env(?:\.([A-Za-z_]\w*)|\[\s*["'`]([^"'`]+)["'`]\s*\])/g,
  )) {
    const name = match[1] ?? match[2]!;
    if (env[name] === undefined || env[name] === "") names.add(name);
  }
  return [...names];
}

const LOOPBACK = /^(127\.|::1$|::ffff:127\.)/;

/**
 * The policy with its failed-attempt limit relaxed for loopback clients: their failures are
 * spread over `DEV_LOOPBACK_LIMIT_FACTOR` buckets, so they get that many times the
 * configured limit. Other addresses (with `--host 0.0.0.0`) keep it as configured.
 */
export function relaxLoopbackLimit(policy: AuthPolicy): AuthPolicy {
  let next = 0;
  const spread = (request: AuthRequest): AuthRequest =>
    LOOPBACK.test(request.remoteAddress ?? "")
      ? { ...request, remoteAddress: `dev-loopback-${next++ % DEV_LOOPBACK_LIMIT_FACTOR}` }
      : request;
  return Object.assign(Object.create(policy) as AuthPolicy, {
    authenticate: (request: AuthRequest) => policy.authenticate(spread(request)),
    refresh: (...[current, token, request]: Parameters<AuthPolicy["refresh"]>) =>
      policy.refresh(current, token, spread(request)),
  });
}

/**
 * Functions the module calls without importing or declaring them, from the short list that
 * Cloudflare's guide uses without an import (`verifyJWT`). Inside the guide's try/catch
 * such a call is a ReferenceError turned into "Unauthorized" for every client.
 */
export function unimportedHelpers(source: string): string[] {
  return ["verifyJWT"].filter(
    (name) =>
      new RegExp(`\\b${name}\\s*\\(`).test(source) &&
      !new RegExp(`import[^;]*\\b${name}\\b`).test(source) &&
      !new RegExp(`(function|const|let|var|class)\\s+${name}\\b`).test(source),
  );
}

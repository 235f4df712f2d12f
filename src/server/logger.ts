import { type Logger, type LoggerOptions, pino } from "pino";

/** How the server logs: a pino logger, `false` for silence, or options. */
export type LoggerSetting = Logger | false | { level?: LoggerOptions["level"]; pretty?: boolean };

/**
 * Colour codes only on a terminal: piped into a file or CI log they are noise. `NO_COLOR`
 * (no-color.org) turns them off and `FORCE_COLOR` on, as most command-line tools do.
 */
export function colorWanted(
  env: NodeJS.ProcessEnv = process.env,
  isTTY = process.stdout.isTTY === true,
): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== "0") return true;
  return isTTY;
}

/** Structured JSON logs by default; `pretty` for a readable terminal during development. */
export function createLogger(setting: LoggerSetting | undefined): Logger {
  if (setting === false) return pino({ level: "silent" });
  if (setting !== undefined && "child" in setting) return setting;
  const level = setting?.level ?? process.env.OUTPOST_LOG_LEVEL ?? "info";
  if (setting?.pretty) {
    return pino({
      level,
      transport: {
        target: "pino-pretty",
        options: { colorize: colorWanted(), translateTime: "HH:MM:ss", ignore: "pid,hostname" },
      },
    });
  }
  return pino({ level, base: { service: "outpost" } });
}

const CREDENTIAL_PARAMS =
  /^(token|access_token|id_token|ticket|jwt|auth|authorization|key|api_key|apikey|secret|password|session)$/i;

/**
 * Something that looks like a JWS or JWE compact token: base64url segments joined by dots,
 * the first long enough to be a JSON header. Short dotted words (`v1.2.3`) do not match.
 */
const JWT_SHAPED = /[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*/;

const REDACTED = "[redacted]";

function decoded(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * A URL (or path with query) safe to log. Redacted: the values of credential-looking query
 * parameters and of every name in `params` (the auth policy's `credentialParams`), any
 * JWT-shaped value anywhere (path segment, parameter name or value, also percent-encoded),
 * user info; the fragment is dropped.
 *
 * @example
 * redactUrl("/agents/chat/a?t=eyJhbGciOi.eyJzdWIi.c2ln", ["t"]); // "/agents/chat/a?t=[redacted]"
 */
export function redactUrl(url: URL | string, params: readonly string[] = []): string {
  const parsed = typeof url === "string" ? new URL(url, "http://localhost") : new URL(url.href);
  const named = new Set(params.map((p) => p.toLowerCase()));
  const query = new URLSearchParams();
  for (const [key, value] of parsed.searchParams) {
    const secret =
      CREDENTIAL_PARAMS.test(key) || named.has(key.toLowerCase()) || JWT_SHAPED.test(value);
    query.append(JWT_SHAPED.test(key) ? REDACTED : key, secret ? REDACTED : value);
  }
  const path = parsed.pathname
    .split("/")
    .map((segment) => (JWT_SHAPED.test(decoded(segment)) ? REDACTED : segment))
    .join("/");
  const search =
    query.size > 0 ? `?${query.toString().replaceAll("%5Bredacted%5D", REDACTED)}` : "";
  const safe = `${path}${search}`;
  return typeof url === "string" && url.startsWith("/") ? safe : `${parsed.origin}${safe}`;
}

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

/** A URL (or path with query) safe to log: credential-looking query values are replaced. */
export function redactUrl(url: URL | string): string {
  const parsed = typeof url === "string" ? new URL(url, "http://localhost") : new URL(url.href);
  for (const key of [...parsed.searchParams.keys()]) {
    if (CREDENTIAL_PARAMS.test(key)) parsed.searchParams.set(key, "[redacted]");
  }
  parsed.username = "";
  parsed.password = "";
  const path = `${parsed.pathname}${parsed.search}`.replaceAll("%5Bredacted%5D", "[redacted]");
  return typeof url === "string" && url.startsWith("/") ? path : `${parsed.origin}${path}`;
}

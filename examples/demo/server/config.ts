import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

/** The demo folder, `examples/demo`. */
export const demoDir = fileURLToPath(new URL("..", import.meta.url)).replace(/[\\/]$/, "");
const defaultDistDir = `${demoDir}/dist`;

/** Everything the demo can be told, from flags or environment variables. */
export interface DemoConfig {
  /** Port of the app (and identity provider); 0 picks a free one. */
  appPort: number;
  /** Port of the Outpost agent server; 0 picks a free one. */
  agentPort: number;
  /** Where the agent databases live. */
  dataDir: string;
  /** Lifetime of the tokens of the JWT-refresh panel, in seconds. */
  refreshTtl: number;
  /** Lifetime of every other token, in seconds. */
  tokenTtl: number;
  /** Where the Vite build goes and is served from. */
  distDir: string;
  /** Skip the Vite build and serve what `distDir` already holds. */
  skipBuild: boolean;
}

export const HELP = `Usage: npm start -- [options]

Starts the Outpost demo: the app (and its identity provider) and the agent server.

Options (environment variable in brackets):
  --app-port <n>      port of the app (default 5173) [DEMO_APP_PORT]
  --agent-port <n>    port of the agent server (default 8787) [DEMO_AGENT_PORT]
  --data-dir <dir>    where agent databases live (default .data/demo) [DEMO_DATA_DIR]
  --refresh-ttl <s>   token lifetime of the JWT refresh panel (default 30) [DEMO_REFRESH_TTL]
  --token-ttl <s>     token lifetime of the other panels (default 300) [DEMO_TOKEN_TTL]
  --dist-dir <dir>    where the app is built to (default examples/demo/dist)
  --skip-build        serve the app as last built instead of building it now
  -h, --help          show this help
`;

/** Read the demo's settings; flags win over environment variables. Throws on bad values. */
export function readConfig(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): DemoConfig | "help" {
  const { values } = parseArgs({
    args: argv,
    options: {
      "app-port": { type: "string" },
      "agent-port": { type: "string" },
      "data-dir": { type: "string" },
      "refresh-ttl": { type: "string" },
      "token-ttl": { type: "string" },
      "dist-dir": { type: "string" },
      "skip-build": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return "help";
  return {
    appPort: integer("--app-port", values["app-port"] ?? env.DEMO_APP_PORT, 5173, 0, 65535),
    agentPort: integer("--agent-port", values["agent-port"] ?? env.DEMO_AGENT_PORT, 8787, 0, 65535),
    dataDir: resolve(values["data-dir"] ?? env.DEMO_DATA_DIR ?? ".data/demo"),
    refreshTtl: integer("--refresh-ttl", values["refresh-ttl"] ?? env.DEMO_REFRESH_TTL, 30, 2, 300),
    tokenTtl: integer("--token-ttl", values["token-ttl"] ?? env.DEMO_TOKEN_TTL, 300, 2, 3600),
    distDir: resolve(values["dist-dir"] ?? defaultDistDir),
    skipBuild: values["skip-build"] ?? env.DEMO_SKIP_BUILD === "1",
  };
}

function integer(
  name: string,
  raw: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} must be a whole number from ${min} to ${max}, not "${raw}"`);
  }
  return value;
}

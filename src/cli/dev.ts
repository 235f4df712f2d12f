import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { type AgentClass, isAgentClass } from "../agent/agent.js";
import { agentNameToKebab } from "../protocol/frames.js";
import type { RouteFunction } from "../server/custom-routes.js";
import { serve } from "../server/serve.js";
import {
  DEV_LOOPBACK_LIMIT_FACTOR,
  prepareDevAuth,
  relaxLoopbackLimit,
  unimportedHelpers,
} from "./dev-auth.js";
import type { CommandIo } from "./io.js";
import { loadUserModule } from "./load-module.js";

const HELP = `Usage: outpost dev <module.ts|.js> [options]

Serves every Agent subclass the module exports. TypeScript modules load directly.
An exported \`auth\` (e.g. tokenAuth({ keys })) guards every connection; it is built at
startup, and a secret or key file it cannot load stops the server with one line. Clients
on this machine get ${DEV_LOOPBACK_LIMIT_FACTOR} times its failed-attempt limit. An exported \`env\` object becomes
this.env (default: process.env). An exported \`route\` function maps addresses of your
own to instances (what a client with basePath connects to), as serve({ route }) does.

Options:
  --port <n>        port to listen on (default 8787; 0 picks a free one)
  --host <addr>     address to listen on (default 127.0.0.1)
  --data-dir <dir>  where agent databases live (default .outpost)
  --cluster <url>   run as one node of a cluster on PostgreSQL (postgres://…)
  --cluster-schema <name>
                    schema of the cluster's tables (default outpost)
  --json            structured JSON logs instead of the readable ones
  -h, --help        show this help
`;

/** `outpost dev <module>`: serve the agents a module exports. */
export async function devCommand(argv: string[], io: CommandIo): Promise<number> {
  let parsed: ReturnType<typeof parseDevArgs>;
  try {
    parsed = parseDevArgs(argv);
  } catch (error) {
    io.stderr(`${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.stdout(HELP);
    return 0;
  }
  const [modulePath] = positionals;
  if (modulePath === undefined || positionals.length > 1) {
    io.stderr(`outpost dev needs exactly one module\n\n${HELP}`);
    return 2;
  }
  const port = Number(values.port ?? "8787");
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    io.stderr(`--port must be a number from 0 to 65535, not "${values.port}"\n`);
    return 2;
  }

  let loaded: Record<string, unknown>;
  try {
    loaded = await loadUserModule(resolve(modulePath));
  } catch (error) {
    io.stderr(`could not load ${modulePath}: ${(error as Error).message}\n`);
    return 1;
  }
  const agents = agentExports(loaded);
  if (Object.keys(agents).length === 0) {
    io.stderr(`${modulePath} exports no Agent subclass\n`);
    return 1;
  }

  const source = await readFile(resolve(modulePath), "utf8").catch(() => "");
  for (const name of unimportedHelpers(source)) {
    io.stderr(
      `warning: ${modulePath} calls ${name} but never imports it; every call throws. Use connection.auth (already verified), or import { ${name} } from "outpost/auth"\n`,
    );
  }
  if (loaded.route !== undefined && typeof loaded.route !== "function") {
    io.stderr(
      `outpost dev: ${modulePath} exports \`route\`, but it is not a function: (request) => ({ agent, name })\n`,
    );
    return 1;
  }
  const route = loaded.route as RouteFunction | undefined;
  const auth = await prepareDevAuth(loaded.auth, source);
  if (!auth.ok) {
    io.stderr(`outpost dev: ${auth.error}\n`);
    return 1;
  }

  if (values["cluster-schema"] !== undefined && values.cluster === undefined) {
    io.stderr("--cluster-schema needs --cluster postgres://…\n");
    return 1;
  }
  const cluster =
    values.cluster === undefined
      ? undefined
      : {
          postgres: values.cluster,
          ...(values["cluster-schema"] !== undefined && { schema: values["cluster-schema"] }),
        };
  const hostname = values.host ?? "127.0.0.1";
  let server: Awaited<ReturnType<typeof serve>>;
  try {
    server = await serve({
      agents,
      port,
      hostname,
      dataDir: values["data-dir"] ?? ".outpost",
      env: (loaded.env as Record<string, unknown> | undefined) ?? process.env,
      auth: auth.policy && relaxLoopbackLimit(auth.policy),
      logger: values.json ? { level: "info" } : { level: "info", pretty: true },
      ...(cluster !== undefined && { cluster }),
      ...(route !== undefined && { route }),
    });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EADDRINUSE") throw error;
    io.stderr(`outpost dev: port ${port} on ${hostname} is in use; pick another with --port <n>\n`);
    return 1;
  }
  // A stray rejected promise in agent code is a bug to show, not a reason to stop serving.
  process.on("unhandledRejection", (reason) => {
    server.logger.error({ err: reason }, "unhandled promise rejection in agent code");
  });
  const wsUrl = server.url.replace(/^http/, "ws");
  // One write, so the banner reaches a terminal or a log collector whole.
  const banner = [`Outpost dev server at ${server.url}\n`];
  for (const name of Object.keys(agents)) {
    banner.push(`  ${name} → ${wsUrl}/agents/${agentNameToKebab(name)}/<name>\n`);
  }
  if (route !== undefined) banner.push("  route → your own addresses (the exported route)\n");
  banner.push(auth.policy ? "  auth: on\n" : "  auth: off (export `auth` to require tokens)\n");
  if (cluster !== undefined) banner.push(`  cluster: on (schema ${cluster.schema ?? "outpost"})\n`);
  io.stdout(banner.join(""));
  if (auth.policy) {
    server.logger.info(
      `failed-attempt limit relaxed for clients on this machine (${DEV_LOOPBACK_LIMIT_FACTOR}x, development only; serve() keeps it as configured)`,
    );
  }
  return new Promise<number>(() => {
    // Runs until a signal closes the server (serve() exits the process then).
  });
}

function parseDevArgs(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      port: { type: "string", short: "p" },
      host: { type: "string" },
      "data-dir": { type: "string" },
      cluster: { type: "string" },
      "cluster-schema": { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
}

/** The module's exports that are Agent subclasses, by export name. */
export function agentExports(module: Record<string, unknown>): Record<string, AgentClass> {
  const agents: Record<string, AgentClass> = {};
  for (const [name, value] of Object.entries(module)) {
    if (isAgentClass(value)) agents[name] = value;
  }
  return agents;
}

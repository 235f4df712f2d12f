import { parseArgs } from "node:util";
import { createKeySet, type KeySet, loadKeySet } from "../auth/keys.js";
import { FULL_SCOPE } from "../auth/scope.js";
import { issueToken } from "../auth/tokens.js";
import type { CommandIo } from "./io.js";
import { defaultServerRefusal, unknownScopes, urlAgentName } from "./token-check.js";

const DEFAULT_FILE = "outpost-keys.json";

const HELP = `Usage: outpost token --sub <user> --agent <agent> --name <instance> [options]

Prints a signed token for one agent instance, e.g. for a test client or a script.
Warns on stderr when a server with tokenAuth's default settings would refuse it (e.g. a
--ttl above its maximum lifetime of an hour) or a scope is unknown; a class name given as
--agent (ChatRoom) is turned into its URL name (chat-room).

  --sub <user>          the subject the token speaks for
  --agent <agent>       agent name as in the URL (chat-room; ChatRoom is converted),
                        a prefix like chat-*, or *
  --name <instance>     instance name, a prefix like room-*, or *
  --ttl <seconds>       lifetime (default 300)
  --scope "<scopes>"    space-separated, e.g. "rpc state:write" (default: full access)
  --keys <file>         key file to sign with (default ${DEFAULT_FILE})
  --secret-env <NAME>   sign HS256 with the secret in environment variable NAME instead
  --audience <aud>      aud claim (default outpost)
  --issuer <iss>        iss claim (default outpost)
  -h, --help            show this help
`;

/** `outpost token`: print a signed token. */
export async function tokenCommand(argv: string[], io: CommandIo): Promise<number> {
  let values: ReturnType<typeof parse>["values"];
  try {
    ({ values } = parse(argv));
  } catch (error) {
    io.stderr(`${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    io.stdout(HELP);
    return 0;
  }
  const missing = (["sub", "agent", "name"] as const).filter((o) => !values[o]);
  if (missing.length > 0) {
    io.stderr(`missing ${missing.map((o) => `--${o}`).join(", ")}\n\n${HELP}`);
    return 2;
  }
  const ttl = Number(values.ttl ?? "300");
  if (!/^\d+$/.test(values.ttl ?? "300") || !Number.isSafeInteger(ttl) || ttl < 1) {
    io.stderr(`--ttl must be a whole number of seconds, at least 1, not "${values.ttl}"\n`);
    return 2;
  }
  if (values.keys !== undefined && values["secret-env"] !== undefined) {
    io.stderr("give --keys or --secret-env, not both\n");
    return 2;
  }
  let keys: KeySet;
  try {
    keys = await signingKeys(values.keys, values["secret-env"]);
  } catch (error) {
    const message = (error as Error).message;
    const hint = message.includes("ENOENT") ? " (create one with `outpost keys generate`)" : "";
    io.stderr(`outpost token: ${message}${hint}\n`);
    return 1;
  }
  const agent = urlAgentName(values.agent as string);
  if (agent !== values.agent) {
    io.stderr(
      `note: --agent ${values.agent} is a class name; URLs use "${agent}", so the token names that\n`,
    );
  }
  for (const scope of unknownScopes(values.scope)) {
    io.stderr(
      `warning: unknown scope "${scope}" grants nothing (known: ${FULL_SCOPE.join(" ")})\n`,
    );
  }
  try {
    const token = await issueToken(keys, {
      sub: values.sub as string,
      agent,
      name: values.name as string,
      ttl,
      ...(values.scope !== undefined && { scope: values.scope }),
      ...(values.audience !== undefined && { audience: values.audience }),
      ...(values.issuer !== undefined && { issuer: values.issuer }),
    });
    const refusal = await defaultServerRefusal(keys, token, agent, values.name as string);
    if (refusal !== undefined) {
      io.stderr(
        `warning: a server with tokenAuth's default settings refuses this token (${refusal})\n`,
      );
    }
    io.stdout(`${token}\n`);
    return 0;
  } catch (error) {
    io.stderr(`outpost token: ${(error as Error).message}\n`);
    return 1;
  }
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: false,
    strict: true,
    options: {
      sub: { type: "string" },
      agent: { type: "string" },
      name: { type: "string" },
      ttl: { type: "string" },
      scope: { type: "string" },
      keys: { type: "string" },
      "secret-env": { type: "string" },
      audience: { type: "string" },
      issuer: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
}

async function signingKeys(
  file: string | undefined,
  secretEnv: string | undefined,
): Promise<KeySet> {
  if (secretEnv === undefined) return loadKeySet(file ?? DEFAULT_FILE);
  const secret = process.env[secretEnv];
  if (secret === undefined || secret === "") {
    throw new Error(`environment variable ${secretEnv} is not set`);
  }
  return createKeySet({ secret });
}

import { readFileSync } from "node:fs";
import { devCommand } from "./dev.js";
import { type CommandIo, processIo } from "./io.js";
import { keysCommand } from "./keys.js";
import { tokenCommand } from "./token.js";

const HELP = `Usage: outpost <command> [options]

Commands:
  dev <module>     serve the agents a module exports (TypeScript loads directly)
  keys generate    create a signing key file (EdDSA by default)
  keys rotate      add a new signing key; old keys keep verifying
  keys retire      stop accepting tokens signed by one key
  token            issue a token: --sub --agent --name [--ttl]

Run \`outpost <command> --help\` for a command's options; \`outpost --version\` prints the version.
`;

/** The installed package's version (dist/cli/ and src/cli/ both sit two levels down). */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"));
  return String(pkg.version);
}

const commands: Record<string, (argv: string[], io: CommandIo) => Promise<number>> = {
  dev: devCommand,
  keys: keysCommand,
  token: tokenCommand,
};

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    processIo.stdout(HELP);
    return command === undefined ? 2 : 0;
  }
  if (command === "--version" || command === "-v" || command === "version") {
    processIo.stdout(`${version()}\n`);
    return 0;
  }
  const run = commands[command];
  if (run === undefined) {
    processIo.stderr(`unknown command "${command}"\n\n${HELP}`);
    return 2;
  }
  return run(rest, processIo);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    processIo.stderr(`outpost: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);

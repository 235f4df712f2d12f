import { access } from "node:fs/promises";
import { parseArgs } from "node:util";
import { type AsymmetricAlgorithm, createKeySet, loadKeySet, saveKeySet } from "../auth/keys.js";
import type { CommandIo } from "./io.js";

const DEFAULT_FILE = "outpost-keys.json";
const ALGORITHMS: readonly string[] = ["EdDSA", "ES256", "RS256"];

const HELP = `Usage: outpost keys <generate|rotate|retire> [options]

  generate   create a key file with one signing key pair
    --algorithm <alg>  EdDSA (default, Ed25519), ES256 or RS256
    --out <file>       where to write it (default ${DEFAULT_FILE}); never overwritten
                       unless --force is given

  rotate     add a new signing key; older keys keep verifying until retired
    --file <file>      the key file (default ${DEFAULT_FILE})
    --algorithm <alg>  algorithm of the new key (default: that of the current one)

  retire     stop accepting tokens signed by one key
    --file <file>      the key file (default ${DEFAULT_FILE})
    --kid <kid>        the key to retire (not the current signing key)

The key file holds private keys and is written readable by its owner only (mode 0600).
Keep it out of version control. Rotate, wait for the longest token lifetime, then retire.
`;

/** `outpost keys generate | rotate | retire`. */
export async function keysCommand(argv: string[], io: CommandIo): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (error) {
    io.stderr(`${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [action, ...extra] = positionals;
  if (values.help) {
    io.stdout(HELP);
    return 0;
  }
  if (action === undefined || extra.length > 0) {
    io.stderr(`outpost keys needs one action: generate, rotate or retire\n\n${HELP}`);
    return 2;
  }
  if (values.algorithm !== undefined && !ALGORITHMS.includes(values.algorithm)) {
    io.stderr(`--algorithm must be one of ${ALGORITHMS.join(", ")}, not "${values.algorithm}"\n`);
    return 2;
  }
  const algorithm = values.algorithm as AsymmetricAlgorithm | undefined;
  try {
    switch (action) {
      case "generate":
        return await generate(values.out ?? DEFAULT_FILE, algorithm, values.force === true, io);
      case "rotate":
        return await rotate(values.file ?? DEFAULT_FILE, algorithm, io);
      case "retire":
        return await retire(values.file ?? DEFAULT_FILE, values.kid, io);
      default:
        io.stderr(`unknown keys action "${action}"\n\n${HELP}`);
        return 2;
    }
  } catch (error) {
    io.stderr(`outpost keys ${action}: ${(error as Error).message}\n`);
    return 1;
  }
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      algorithm: { type: "string" },
      out: { type: "string" },
      file: { type: "string" },
      kid: { type: "string" },
      force: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
}

async function generate(
  path: string,
  algorithm: AsymmetricAlgorithm | undefined,
  force: boolean,
  io: CommandIo,
): Promise<number> {
  if (!force && (await exists(path))) {
    io.stderr(`${path} already exists; use \`outpost keys rotate\` to add a key, or --force\n`);
    return 1;
  }
  const keys = await createKeySet({ algorithm: algorithm ?? "EdDSA" });
  await saveKeySet(path, keys);
  io.stdout(`wrote ${path} (${keys.signingKey().algorithm}, kid ${keys.signingKid})\n`);
  return 0;
}

async function rotate(
  path: string,
  algorithm: AsymmetricAlgorithm | undefined,
  io: CommandIo,
): Promise<number> {
  const keys = await loadKeySet(path);
  const kid = await keys.rotate(algorithm === undefined ? {} : { algorithm });
  await saveKeySet(path, keys);
  io.stdout(`added ${kid} (${keys.signingKey().algorithm}); it signs new tokens\n`);
  io.stdout(`keys in ${path}: ${listKids(keys.kids, kid)}\n`);
  return 0;
}

async function retire(path: string, kid: string | undefined, io: CommandIo): Promise<number> {
  if (kid === undefined || kid === "") {
    io.stderr(`outpost keys retire needs --kid <kid>\n`);
    return 2;
  }
  const keys = await loadKeySet(path);
  if (!keys.retire(kid)) {
    io.stderr(`no key ${kid} in ${path} (keys: ${keys.kids.join(", ")})\n`);
    return 1;
  }
  await saveKeySet(path, keys);
  io.stdout(`retired ${kid}; keys in ${path}: ${listKids(keys.kids, keys.signingKid)}\n`);
  return 0;
}

function listKids(kids: readonly string[], signing: string | undefined): string {
  return kids.map((kid) => (kid === signing ? `${kid} (signing)` : kid)).join(", ");
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

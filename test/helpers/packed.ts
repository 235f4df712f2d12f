import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join, relative } from "node:path";
import { promisify } from "node:util";

const ROOT = join(import.meta.dirname, "..", "..");
const exec = promisify(execFile);
const SQLITE_DIR = join(ROOT, "node_modules", "better-sqlite3");
const SQLITE_ADDON = join(SQLITE_DIR, "build", "Release", "better_sqlite3.node");

/** Outpost as a newcomer installs it: this checkout's `npm pack`, for fresh folders. */
export type PackedOutpost = {
  /** The .tgz `npm pack` wrote. */
  readonly tarball: string;
  /** A folder holding better-sqlite3's addon as a local prebuild (see `installEnv`). */
  readonly prebuilds: string;
};

/** Every file of the tree under `dir`, in a stable order. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name))
    .sort();
}

/**
 * What the folder holds, as one digest: package.json, the files it publishes, and the
 * better-sqlite3 addon offered as the prebuild (scripts/test-node.sh swaps in another one).
 */
function contentDigest(): string {
  const hash = createHash("sha256");
  const files = [
    ...["package.json", "README.md", "LICENSE"].map((file) => join(ROOT, file)),
    ...filesUnder(join(ROOT, "dist")),
    ...filesUnder(join(ROOT, "bin")),
    SQLITE_ADDON,
  ];
  for (const file of files) hash.update(relative(ROOT, file)).update(readFileSync(file));
  return hash.digest("hex").slice(0, 16);
}

/** Tarballs of earlier contents, a day old or more (younger ones may be another run's). */
function pruneOldPacks(): void {
  const dayAgo = Date.now() - 24 * 60 * 60 * 1000;
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith("outpost-packed-")) continue;
    const dir = join(tmpdir(), name);
    if (statSync(dir).mtimeMs < dayAgo) rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Pack this checkout (dist/ as `npm run build` left it) once per content: the tarball is kept
 * under the OS temp dir, named by a digest of what it holds, so the test files that install
 * Outpost into fresh folders share one `npm pack` and a rebuilt dist/ gets a new one.
 *
 * better-sqlite3 would compile SQLite again in each fresh folder (about 50 s here); the addon
 * this project already built is offered as a local prebuild of the same version and ABI.
 */
export async function packOutpost(): Promise<PackedOutpost> {
  const dir = join(tmpdir(), `outpost-packed-${contentDigest()}-abi${process.versions.modules}`);
  const packed = () => {
    const tarball = readdirSync(dir).find((name) => name.endsWith(".tgz"));
    return { tarball: join(dir, tarball!), prebuilds: join(dir, "prebuilds") };
  };
  if (existsSync(dir)) return packed();
  pruneOldPacks();

  // Built beside the final folder and renamed into place, so a concurrent run never sees half.
  const building = `${dir}.${process.pid}`;
  rmSync(building, { recursive: true, force: true });
  mkdirSync(join(building, "prebuilds"), { recursive: true });
  await exec("npm", ["pack", "--ignore-scripts", "--silent", "--pack-destination", building], {
    cwd: ROOT,
  });
  const { version } = JSON.parse(readFileSync(join(SQLITE_DIR, "package.json"), "utf8"));
  const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
  await exec("tar", [
    "czf",
    join(building, "prebuilds", name),
    "-C",
    SQLITE_DIR,
    relative(SQLITE_DIR, SQLITE_ADDON),
  ]);
  try {
    renameSync(building, dir);
  } catch (error) {
    // Another test file packed the same content first: use theirs.
    rmSync(building, { recursive: true, force: true });
    if (!existsSync(dir)) throw error;
  }
  return packed();
}

/**
 * The environment of a fresh terminal: none of the variables `npm test` sets, and no
 * `node_modules/.bin` of this project on PATH, so `npx outpost` can only find the install.
 */
export function freshShellEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(npm_|INIT_CWD$|JWT_SECRET$|TOKEN$|VITEST|NODE_OPTIONS$)/i.test(key)) continue;
    env[key] = value;
  }
  env.PATH = (process.env.PATH ?? "")
    .split(delimiter)
    .filter((entry) => !entry.includes("node_modules"))
    .join(delimiter);
  return { ...env, ...extra };
}

/**
 * A fresh terminal for installing the packed Outpost: `$OUTPOST_TGZ` names the tarball, npm
 * uses its cache before the registry and stays quiet about audits and funding, and
 * better-sqlite3 takes the local prebuild.
 */
export function installEnv(packed: PackedOutpost, extra: Record<string, string> = {}) {
  return freshShellEnv({
    OUTPOST_TGZ: packed.tarball,
    npm_config_prefer_offline: "true",
    npm_config_audit: "false",
    npm_config_fund: "false",
    npm_config_update_notifier: "false",
    npm_config_better_sqlite3_local_prebuilds: packed.prebuilds,
    ...extra,
  });
}

/** One shell block; resolves with its output, rejects with it when the block fails. */
export async function runBlock(code: string, cwd: string, env: NodeJS.ProcessEnv): Promise<string> {
  try {
    const { stdout, stderr } = await exec("bash", ["-euo", "pipefail", "-c", code], {
      cwd,
      env,
      maxBuffer: 16 * 1024 * 1024,
    });
    return stdout + stderr;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`shell block failed:\n${code}\n--- output ---\n${stdout}${stderr}`);
  }
}

/** An app folder with the packed Outpost installed, for checking one of its entries under Node. */
export interface PackedApp {
  readonly dir: string;
  /** A fresh terminal's environment for `npm install` in it (see `installEnv`). */
  readonly env: NodeJS.ProcessEnv;
  /**
   * `node import-hook.mjs` in the folder: plain Node, no loader, that env. The script imports
   * the entry as the app would and prints, as JSON, its export names (`node`) next to those
   * of the plain entry (`plain`). Its exit code and output, never a rejection.
   */
  importEntry(): Promise<{ code: number; stdout: string; stderr: string }>;
  remove(): void;
}

/** `npm init` and `npm install` of the packed Outpost in a fresh folder, for `specifier`. */
export async function packedApp(
  prefix: string,
  specifier: string,
  plainEntry: string,
): Promise<PackedApp> {
  const packed = await packOutpost();
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const env = installEnv(packed);
  await runBlock('npm init -y > /dev/null && npm install "$OUTPOST_TGZ"', dir, env);
  const script = [
    `const hook = await import(${JSON.stringify(specifier)});`,
    `const plain = await import(${JSON.stringify(`./node_modules/outpost/${plainEntry}`)});`,
    "console.log(JSON.stringify({ node: Object.keys(hook).sort(), plain: Object.keys(plain).sort() }));",
    "",
  ].join("\n");
  writeFileSync(join(dir, "import-hook.mjs"), script);
  return {
    dir,
    env,
    importEntry: async () => {
      try {
        const { stdout, stderr } = await exec(process.execPath, ["import-hook.mjs"], {
          cwd: dir,
          env,
        });
        return { code: 0, stdout, stderr };
      } catch (error) {
        const { code, stdout, stderr } = error as { code: number; stdout: string; stderr: string };
        return { code, stdout, stderr };
      }
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

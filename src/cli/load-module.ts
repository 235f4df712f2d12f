import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, extname, join } from "node:path";
import { pathToFileURL } from "node:url";

/**
 * Whether Node treats `file` as an ES module: `.mts`/`.mjs`, or `.ts`/`.js` under a
 * package.json with `"type": "module"` (the nearest one decides, as in Node).
 */
export function isEsModule(file: string): boolean {
  const ext = extname(file);
  if (ext === ".mts" || ext === ".mjs") return true;
  if (ext === ".cts" || ext === ".cjs") return false;
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg)) {
      try {
        return JSON.parse(readFileSync(pkg, "utf8")).type === "module";
      } catch {
        return false;
      }
    }
    if (dirname(dir) === dir) return false;
  }
}

/**
 * Load a user's TypeScript (or JavaScript) module, decorators included, the way its own
 * package says it is written. A CommonJS one is required through tsx's CommonJS hook, so
 * stack traces name the user's file and line; through tsx's `tsImport` it would run from a
 * `data:` URL, and every stack frame would print kilobytes of it.
 */
export async function loadUserModule(file: string): Promise<Record<string, unknown>> {
  // Source maps turn positions in the compiled code back into the user's lines.
  process.setSourceMapsEnabled(true);
  if (isEsModule(file)) {
    const { tsImport } = await import("tsx/esm/api");
    return tsImport(pathToFileURL(file).href, import.meta.url);
  }
  const { register } = await import("tsx/cjs/api");
  register();
  return createRequire(import.meta.url)(file) as Record<string, unknown>;
}

import { createRequire } from "node:module";

/**
 * What the `"node"` entries of the React hooks check before they load: the packages an app
 * installs itself, looked up from the app's `node_modules` as the hook's own imports would
 * be. Node-only (`node:module`); the browser entries do without it.
 */

/** The version of `name` installed where `from` (an `import.meta.url`) resolves, if any. */
export function installedVersion(name: string, from: string): string | undefined {
  try {
    return createRequire(from)(`${name}/package.json`).version;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "MODULE_NOT_FOUND") return undefined;
    // A package whose `exports` hide package.json is there all the same.
    if ((error as NodeJS.ErrnoException).code === "ERR_PACKAGE_PATH_NOT_EXPORTED") return "";
    throw error;
  }
}

/** The React major both hooks need. */
export const REACT_MAJOR = 19;

/** Whether an installed React `version` is one the hooks run on. */
export function supportedReact(version: string): boolean {
  return Number.parseInt(version, 10) >= REACT_MAJOR;
}

/** The error a hook's entry throws when what it needs is missing: one line, what to install. */
export function peerError(message: string): Error {
  return Object.assign(new Error(message), { code: "ERR_OUTPOST_REACT_MISSING" });
}

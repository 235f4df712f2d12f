/**
 * `outpost/react` as Node.js loads it (server rendering, tests, scripts): package.json's
 * `"node"` export condition points here. It checks for React 19 before it loads the hook, so an
 * app without `react` gets one line saying what to install, not Node's ERR_MODULE_NOT_FOUND
 * from inside dist/ (a static import is resolved before any code of the module runs).
 *
 * Bundlers building for the browser take `index.ts`, the same hook without this check: the
 * check needs `node:module`, which a browser does not have, and top-level await, which build
 * targets before ES2022 refuse (Vite 5 and 6 by default); those bundlers name the missing
 * `react` import themselves. The condition sits under `"import"`: `require()` would refuse a
 * module with top-level await, so it keeps the plain entry.
 */
import { createRequire } from "node:module";

const REACT_MAJOR = 19;

/** The installed React's version, or undefined when `react` cannot be found from here. */
function installedReact(): string | undefined {
  try {
    return createRequire(import.meta.url)("react/package.json").version;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "MODULE_NOT_FOUND") return undefined;
    throw error;
  }
}

const version = installedReact();
const major = version === undefined ? undefined : Number.parseInt(version, 10);
if (major === undefined || !(major >= REACT_MAJOR)) {
  const found = version === undefined ? "react is not installed" : `react ${version} is installed`;
  throw Object.assign(
    new Error(
      `outpost/react needs React ${REACT_MAJOR}, and ${found}: npm install react@${REACT_MAJOR} ` +
        `(and react-dom@${REACT_MAJOR} to render in a browser)`,
    ),
    { code: "ERR_OUTPOST_REACT_MISSING" },
  );
}

const hook = await import("./index.js");

export const { dropCachedQuery, useAgent } = hook;
export type { UseAgentOptions, UseAgentResult } from "./index.js";

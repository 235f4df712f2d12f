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
import { installedVersion, peerError, REACT_MAJOR, supportedReact } from "./peers.js";

const version = installedVersion("react", import.meta.url);
if (version === undefined || !supportedReact(version)) {
  const found = version === undefined ? "react is not installed" : `react ${version} is installed`;
  throw peerError(
    `outpost/react needs React ${REACT_MAJOR}, and ${found}: npm install react@${REACT_MAJOR} ` +
      `(and react-dom@${REACT_MAJOR} to render in a browser)`,
  );
}

const hook = await import("./index.js");

export const { dropCachedQuery, useAgent } = hook;
export type { UseAgentOptions, UseAgentResult } from "./index.js";

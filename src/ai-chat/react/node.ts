/**
 * `outpost/ai-chat/react` as Node.js loads it (server rendering, tests, scripts): package.json's
 * `"node"` export condition points here, as for `outpost/react` (see `src/react/node.ts` for
 * why bundlers keep the plain entry). The app installs the chat packages itself; this names
 * every one that is missing, and a React older than 19, in one line with the command that
 * installs them, instead of Node's ERR_MODULE_NOT_FOUND for the first import it meets.
 */
import { installedVersion, peerError, REACT_MAJOR, supportedReact } from "../../react/peers.js";

/** What the official hook needs besides React, with the version the app installs. */
const CHAT_PACKAGES = [
  ["ai", "ai@6"],
  ["@cloudflare/ai-chat", "@cloudflare/ai-chat"],
  ["@ai-sdk/react", "@ai-sdk/react"],
] as const;

const problems: string[] = [];
const missing: string[] = CHAT_PACKAGES.filter(
  ([name]) => installedVersion(name, import.meta.url) === undefined,
).map(([name]) => name);
const react = installedVersion("react", import.meta.url);
if (react === undefined) missing.unshift("react");
if (missing.length > 0) {
  const names =
    missing.length === 1 ? missing[0] : `${missing.slice(0, -1).join(", ")} and ${missing.at(-1)}`;
  problems.push(`${names} ${missing.length === 1 ? "is" : "are"} not installed`);
}
if (react !== undefined && !supportedReact(react)) {
  problems.push(`react ${react} is installed`);
}
if (problems.length > 0) {
  const install = [...CHAT_PACKAGES.map(([, spec]) => spec), `react@${REACT_MAJOR}`].join(" ");
  throw peerError(
    `outpost/ai-chat/react needs React ${REACT_MAJOR}, ai 6, @cloudflare/ai-chat and ` +
      `@ai-sdk/react, and ${problems.join(" and ")}: npm install ${install}`,
  );
}

const hook = await import("./index.js");

export const { useAgentChat } = hook;
export type { UseAgentChatOptions, UseAgentChatResult } from "./index.js";

import { fileURLToPath } from "node:url";
import react from "@vitejs/plugin-react";
import { build, type InlineConfig } from "vite";
import { demoDir } from "./config.js";

const repoRoot = fileURLToPath(new URL("../../..", import.meta.url)).replace(/[\\/]$/, "");

/**
 * The Vite configuration, kept in code so that `npm start` needs no config file lookup.
 * Two pages: the app (`index.html`, served by the identity provider) and the agent
 * server's own cookie-session page (`agent-page.html`).
 */
export function viteConfig(outDir: string): InlineConfig {
  return {
    configFile: false,
    root: `${demoDir}/app`,
    logLevel: "warn",
    plugins: [react()],
    resolve: {
      // The page imports `outpost/react` exactly as an app would from npm. Inside this
      // repository that name is the package itself, which Vite does not resolve by
      // self-reference, so point it at the build that `npm run build` makes.
      alias: [
        { find: /^outpost\/react$/, replacement: `${repoRoot}/dist/react/index.js` },
        { find: /^outpost\/client$/, replacement: `${repoRoot}/dist/client/index.js` },
        {
          find: /^outpost\/ai-chat\/react$/,
          replacement: `${repoRoot}/dist/ai-chat/react/index.js`,
        },
      ],
    },
    build: {
      outDir,
      emptyOutDir: true,
      sourcemap: true,
      rollupOptions: {
        input: {
          app: `${demoDir}/app/index.html`,
          agent: `${demoDir}/app/agent-page.html`,
        },
      },
    },
  };
}

/** Build the React app into `outDir`. */
export async function buildApp(outDir: string): Promise<void> {
  await build(viteConfig(outDir));
}

import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { build } from "vite";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PackedApp, packedApp, runBlock } from "../helpers/packed.js";

const ROOT = join(import.meta.dirname, "..", "..");

/** A Vite production build of a page importing the hook, with Vite's default (browser) target. */
async function viteBrowserBuild(dir: string): Promise<string> {
  const outDir = join(dir, "dist");
  await build({
    configFile: false,
    root: dir,
    logLevel: "silent",
    build: { outDir, emptyOutDir: true },
  });
  const assets = join(outDir, "assets");
  return readdirSync(assets)
    .filter((name) => name.endsWith(".js"))
    .map((name) => readFileSync(join(assets, name), "utf8"))
    .join("\n");
}

describe.skipIf(!existsSync(join(ROOT, "dist", "react", "index.js")))(
  "outpost/react installed from the packed package into an app",
  () => {
    let app: PackedApp;

    beforeAll(async () => {
      app = await packedApp("outpost-react-app-", "outpost/react", "dist/react/index.js");
      writeFileSync(
        join(app.dir, "index.html"),
        '<script type="module">import { useAgent } from "outpost/react"; console.log(useAgent);</script>\n',
      );
    }, 180_000);

    afterAll(() => app?.remove());

    it("without react, importing it under plain node says to install React 19 and exits non-zero", async () => {
      const result = await app.importEntry();
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(
        "outpost/react needs React 19, and react is not installed: npm install react@19",
      );
      expect(result.stderr).not.toContain("ERR_MODULE_NOT_FOUND");
    });

    it("without react, a Vite browser build fails naming react as the import it cannot give", async () => {
      // Vite stands an optional peer dependency that is not installed in for a stub module;
      // its error is what an app bundled for the browser sees (docs/api.md quotes it).
      const failure = await viteBrowserBuild(app.dir).then(
        () => new Error("the build succeeded"),
        (error: Error) => error,
      );
      expect(failure.message).toMatch(/is not exported by "__vite-optional-peer-dep:react:outpost/);
    });

    it("with react 18, importing it under plain node names the installed version", async () => {
      // npm refuses react 18 against Outpost's peer range unless told to ignore peers.
      await runBlock("npm install --legacy-peer-deps react@18", app.dir, app.env);
      const result = await app.importEntry();
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(
        /outpost\/react needs React 19, and react 18\.\d+\.\d+ is installed: npm install react@19/,
      );
    }, 60_000);

    it("with React 19, imports under plain node with the browser entry's exports", async () => {
      await runBlock("npm install react@19", app.dir, app.env);
      const result = await app.importEntry();
      expect(result.stderr).toBe("");
      expect(result.code).toBe(0);
      const { node, plain } = JSON.parse(result.stdout);
      expect(node).toEqual(["dropCachedQuery", "useAgent"]);
      expect(node).toEqual(plain);
    }, 60_000);

    it("with React 19, a Vite browser build takes the entry without the check", async () => {
      const bundle = await viteBrowserBuild(app.dir);
      expect(bundle).toContain("useSyncExternalStore");
      expect(bundle).not.toContain("outpost/react needs React");
    }, 60_000);
  },
);

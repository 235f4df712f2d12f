import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PackedApp, packedApp, runBlock } from "../../helpers/packed.js";

const ROOT = join(import.meta.dirname, "..", "..", "..");
const devDependencies: Record<string, string> = JSON.parse(
  readFileSync(join(ROOT, "package.json"), "utf8"),
).devDependencies;

const NEEDS =
  "outpost/ai-chat/react needs React 19, ai 6, @cloudflare/ai-chat and @ai-sdk/react, and";
const INSTALL = "npm install ai@6 @cloudflare/ai-chat @ai-sdk/react react@19";

describe.skipIf(!existsSync(join(ROOT, "dist", "ai-chat", "react", "index.js")))(
  "outpost/ai-chat/react installed from the packed package into an app",
  () => {
    let app: PackedApp;

    beforeAll(async () => {
      app = await packedApp(
        "outpost-chat-react-app-",
        "outpost/ai-chat/react",
        "dist/ai-chat/react/index.js",
      );
    }, 180_000);

    afterAll(() => app?.remove());

    it("without the chat packages, importing it under plain node names every one missing and the command that installs them", async () => {
      const result = await app.importEntry();
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(
        `${NEEDS} react, ai, @cloudflare/ai-chat and @ai-sdk/react are not installed: ${INSTALL}`,
      );
      expect(result.stderr).not.toContain("ERR_MODULE_NOT_FOUND");
    });

    it("with react 18 and no chat packages, names both the missing packages and the old React", async () => {
      // npm refuses react 18 against Outpost's peer range unless told to ignore peers.
      await runBlock("npm install --legacy-peer-deps react@18", app.dir, app.env);
      const result = await app.importEntry();
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(
        /ai, @cloudflare\/ai-chat and @ai-sdk\/react are not installed and react 18\.\d+\.\d+ is installed: npm install ai@6/,
      );
    }, 60_000);

    it("with React 19 and the chat packages, imports under plain node with the plain entry's exports", async () => {
      const versions = ["ai", "@cloudflare/ai-chat", "@ai-sdk/react"]
        .map((name) => `${name}@${devDependencies[name]}`)
        .join(" ");
      await runBlock(`npm install --prefer-offline react@19 ${versions}`, app.dir, app.env);
      const result = await app.importEntry();
      expect(result.stderr).not.toContain("outpost/ai-chat/react needs");
      expect(result.code).toBe(0);
      const { node, plain } = JSON.parse(result.stdout);
      expect(node).toEqual(["useAgentChat"]);
      expect(node).toEqual(plain);
    }, 180_000);
  },
);

import { execFile } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installEnv, type PackedOutpost, packOutpost, runBlock } from "../../helpers/packed.js";
import { tempDir } from "../../helpers/server.js";

const ROOT = join(import.meta.dirname, "..", "..", "..");
const exec = promisify(execFile);
const devDependencies: Record<string, string> = JSON.parse(
  readFileSync(join(ROOT, "package.json"), "utf8"),
).devDependencies;

/** An app's module that imports the chat hook and lists what it got, next to the plain entry's. */
const IMPORT_HOOK = `
const hook = await import("outpost/ai-chat/react");
const plain = await import("./node_modules/outpost/dist/ai-chat/react/index.js");
console.log(JSON.stringify({ node: Object.keys(hook).sort(), plain: Object.keys(plain).sort() }));
`;

async function importUnderNode(dir: string, env: NodeJS.ProcessEnv) {
  try {
    const { stdout, stderr } = await exec(process.execPath, ["import-hook.mjs"], { cwd: dir, env });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const { code, stdout, stderr } = error as { code: number; stdout: string; stderr: string };
    return { code, stdout, stderr };
  }
}

const NEEDS =
  "outpost/ai-chat/react needs React 19, ai 6, @cloudflare/ai-chat and @ai-sdk/react, and";
const INSTALL = "npm install ai@6 @cloudflare/ai-chat @ai-sdk/react react@19";

describe.skipIf(!existsSync(join(ROOT, "dist", "ai-chat", "react", "index.js")))(
  "outpost/ai-chat/react installed from the packed package into an app",
  () => {
    let packed: PackedOutpost;
    let app: ReturnType<typeof tempDir>;
    let env: NodeJS.ProcessEnv;

    beforeAll(async () => {
      packed = await packOutpost();
      app = tempDir("outpost-chat-react-app-");
      env = installEnv(packed);
      await runBlock('npm init -y > /dev/null && npm install "$OUTPOST_TGZ"', app.dir, env);
      writeFileSync(join(app.dir, "import-hook.mjs"), IMPORT_HOOK);
    }, 180_000);

    afterAll(() => app?.remove());

    it("without the chat packages, importing it under plain node names every one missing and the command that installs them", async () => {
      const result = await importUnderNode(app.dir, env);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(
        `${NEEDS} react, ai, @cloudflare/ai-chat and @ai-sdk/react are not installed: ${INSTALL}`,
      );
      expect(result.stderr).not.toContain("ERR_MODULE_NOT_FOUND");
    });

    it("with react 18 and no chat packages, names both the missing packages and the old React", async () => {
      // npm refuses react 18 against Outpost's peer range unless told to ignore peers.
      await runBlock("npm install --legacy-peer-deps react@18", app.dir, env);
      const result = await importUnderNode(app.dir, env);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(
        /ai, @cloudflare\/ai-chat and @ai-sdk\/react are not installed and react 18\.\d+\.\d+ is installed: npm install ai@6/,
      );
    }, 60_000);

    it("with React 19 and the chat packages, imports under plain node with the plain entry's exports", async () => {
      const versions = ["ai", "@cloudflare/ai-chat", "@ai-sdk/react"]
        .map((name) => `${name}@${devDependencies[name]}`)
        .join(" ");
      await runBlock(`npm install --prefer-offline react@19 ${versions}`, app.dir, env);
      const result = await importUnderNode(app.dir, env);
      expect(result.stderr).not.toContain("outpost/ai-chat/react needs");
      expect(result.code).toBe(0);
      const { node, plain } = JSON.parse(result.stdout);
      expect(node).toEqual(["useAgentChat"]);
      expect(node).toEqual(plain);
    }, 180_000);
  },
);

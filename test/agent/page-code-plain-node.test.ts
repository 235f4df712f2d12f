import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createKeySet, issueToken } from "../../src/auth/index.js";
import { Agent, type Connection } from "../../src/index.js";
import { startServer, tempDir, wsUrl } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";
import { connect, refused } from "../helpers/ws-client.js";

const ROOT = join(import.meta.dirname, "..", "..");
const SECRET = "page-code-secret-0123456789abcdef-xyz";

/**
 * The server-side verification code of Cloudflare's cross-domain page, in JavaScript as the
 * page gives it, with only the package name changed. Note: it calls `verifyJWT` but never
 * imports it, and its try/catch turns the ReferenceError into "Unauthorized".
 */
const PAGE_CODE = `import { Agent, Connection, ConnectionContext } from "outpost";
export class SecureAgent extends Agent {
async onConnect(connection, ctx) {
const url = new URL(ctx.request.url);
const token = url.searchParams.get("token");
const userId = url.searchParams.get("userId");
// Verify the token
if (!token || !(await this.verifyToken(token, userId))) {
connection.close(4001, "Unauthorized");
return;
}
// Store user info on the connection state
connection.setState({ userId, authenticated: true });
}
async verifyToken(token, userId) {
try {
const payload = await verifyJWT(token, this.env.JWT_SECRET);
return payload.sub === userId && payload.exp > Date.now() / 1000;
} catch {
return false;
}
}
}
`;

const SERVER = `import { serve } from "outpost";
import { createKeySet, tokenAuth } from "outpost/auth";
import { SecureAgent } from "./secure-agent.js";
const server = await serve({
  agents: { SecureAgent },
  port: 0,
  dataDir: process.argv[2],
  env: { JWT_SECRET: ${JSON.stringify(SECRET)} },
  auth: tokenAuth({ keys: await createKeySet({ secret: ${JSON.stringify(SECRET)} }) }),
  logger: { level: "warn" },
  handleSignals: false,
});
console.log(JSON.stringify({ port: server.port }));
`;

const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
});

describe.skipIf(!existsSync(join(ROOT, "dist", "index.js")))("the page's server code", () => {
  it("loads under plain node with the page's import line, and a verified token refused by onConnect is logged once", async () => {
    const project = tempDir("outpost-page-js-");
    try {
      mkdirSync(join(project.dir, "node_modules"));
      symlinkSync(ROOT, join(project.dir, "node_modules", "outpost"));
      writeFileSync(join(project.dir, "package.json"), '{ "type": "module" }');
      writeFileSync(join(project.dir, "secure-agent.js"), PAGE_CODE);
      writeFileSync(join(project.dir, "server.js"), SERVER);
      const child = spawn(process.execPath, ["server.js", join(project.dir, "data")], {
        cwd: project.dir,
        stdio: ["ignore", "pipe", "pipe"],
      });
      children.push(child);
      let output = "";
      child.stdout.on("data", (chunk) => {
        output += chunk;
      });
      child.stderr.on("data", (chunk) => {
        output += chunk;
      });
      await waitFor(
        () => output.includes('{"port"') || child.exitCode !== null,
        "the server",
        20_000,
      );
      const port = Number(/\{"port":(\d+)\}/.exec(output)?.[1]);
      expect(port, output).toBeGreaterThan(0);

      const keys = await createKeySet({ secret: SECRET });
      const token = await issueToken(keys, { sub: "alice", agent: "secure-agent", name: "room" });
      const url = `ws://127.0.0.1:${port}/agents/secure-agent/room?token=${token}&userId=alice`;
      for (let i = 0; i < 2; i++) {
        const closed = await refused(url);
        expect(closed).toMatchObject({ code: 4001, reason: "Unauthorized" });
      }
      await waitFor(() => output.includes("already verified"), "the warning", 10_000);
      const warnings = output.split("\n").filter((line) => line.includes("already verified"));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain("verifyJWT used but not imported");
      expect(warnings[0]).not.toContain(token);
    } finally {
      project.remove();
    }
  }, 40_000);
});

/** The page's `onMessage(connection, message)` with the types Cloudflare gives it. */
class EchoAgent extends Agent {
  override async onMessage(connection: Connection, message: string | ArrayBuffer) {
    connection.send(typeof message === "string" ? `text:${message}` : "binary");
  }
}

describe("onMessage", () => {
  it("accepts the page's string | ArrayBuffer signature and receives text frames", async () => {
    const server = await startServer({ EchoAgent });
    try {
      const client = await connect(wsUrl(server, "/agents/echo-agent/one"));
      client.ws.send("hello");
      await waitFor(() => client.received.includes("text:hello"), "the echo");
      client.ws.close();
    } finally {
      await server.stop();
    }
  });
});

/**
 * One agent server of `npm run cluster`, in a process of its own so that it can be killed
 * on its own. Everything comes from the environment `cluster.ts` sets; prints
 * `{"port":N}` on its first line once it listens.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createDemoAgentServer } from "./agent-server.js";

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === "") throw new Error(`${name} is not set`);
  return value;
}

const node = required("DEMO_NODE");
let handle: ReturnType<typeof createDemoAgentServer>["handle"] | undefined;
const http = createServer((req, res) => {
  if (handle === undefined) {
    res.writeHead(503, { "retry-after": "1" }).end("starting");
    return;
  }
  handle(req, res).catch(() => {
    if (!res.headersSent) res.writeHead(500);
    res.end();
  });
});
await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
const agents = createDemoAgentServer({
  server: http,
  // The origin the browser sees is the load balancer's, not this node's.
  agentOrigin: required("DEMO_AGENT_ORIGIN"),
  appOrigin: required("DEMO_APP_ORIGIN"),
  dataDir: required("DEMO_DATA_DIR"),
  distDir: required("DEMO_DIST_DIR"),
  cookieSecret: Buffer.from(required("DEMO_COOKIE_SECRET"), "base64url"),
  cluster: {
    postgres: required("DEMO_POSTGRES"),
    schema: required("DEMO_SCHEMA"),
    nodeId: node,
  },
});
handle = agents.handle;
await agents.outpost.ready();
process.stdout.write(`${JSON.stringify({ port: (http.address() as AddressInfo).port })}\n`);

const shutdown = () => {
  agents.outpost.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once("SIGINT", shutdown);
process.once("SIGTERM", shutdown);

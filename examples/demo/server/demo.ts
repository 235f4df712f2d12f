/**
 * The whole demo: the app and its identity provider on `http://127.0.0.1:<appPort>`, the
 * Outpost agent server on `http://localhost:<agentPort>`. `127.0.0.1` and `localhost` are
 * different sites to a browser (for cookies too), so every socket from the app to its
 * agents is a cross-domain one.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createDemoAgentServer } from "./agent-server.js";
import type { DemoConfig } from "./config.js";
import { createIdentityProvider } from "./identity-provider.js";

type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

/** A running demo. */
export interface Demo {
  appUrl: string;
  agentUrl: string;
  close(): Promise<void>;
}

/** Start both servers. Ports may be 0; the returned URLs carry the real ones. */
export async function startDemo(config: DemoConfig): Promise<Demo> {
  if (!config.skipBuild) {
    // Loaded only when building: Vite is a large import that `--skip-build` does without.
    const { buildApp } = await import("./build-app.js");
    await buildApp(config.distDir);
  }

  // Both servers listen before either is set up, because each needs the other's origin
  // (and with port 0 nobody knows it until then).
  let appHandler: Handler | undefined;
  let agentHandler: Handler | undefined;
  const appHttp = httpServer(() => appHandler);
  const agentHttp = httpServer(() => agentHandler);
  const appPort = await listen(appHttp, config.appPort, "--app-port");
  const agentPort = await listen(agentHttp, config.agentPort, "--agent-port").catch(
    async (error: unknown) => {
      await stop(appHttp);
      throw error;
    },
  );
  const appOrigin = `http://127.0.0.1:${appPort}`;
  const agentOrigin = `http://localhost:${agentPort}`;

  const idp = await createIdentityProvider({
    appOrigin,
    agentOrigin,
    refreshTtl: config.refreshTtl,
    tokenTtl: config.tokenTtl,
    distDir: config.distDir,
  });
  appHandler = idp.handle;
  const agents = createDemoAgentServer({
    server: agentHttp,
    agentOrigin,
    appOrigin,
    dataDir: config.dataDir,
    distDir: config.distDir,
  });
  agentHandler = agents.handle;

  let closing: Promise<void> | undefined;
  return {
    appUrl: appOrigin,
    agentUrl: agentOrigin,
    close() {
      closing ??= (async () => {
        // Agents first: their sockets close 1001 and their databases are flushed.
        await agents.outpost.close();
        await Promise.all([stop(agentHttp), stop(appHttp)]);
      })();
      return closing;
    },
  };
}

function httpServer(handler: () => Handler | undefined): Server {
  return createServer((req, res) => {
    const handle = handler();
    if (handle === undefined) {
      res.writeHead(503, { "retry-after": "1" }).end("starting");
      return;
    }
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
}

/** A port the demo cannot have: one line for the user, naming the flag that changes it. */
export class PortInUseError extends Error {
  override readonly name = "PortInUseError";
}

function listen(server: Server, port: number, flag: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) => {
      reject(
        error.code === "EADDRINUSE"
          ? new PortInUseError(`port ${port} is in use; pick another with npm start -- ${flag} <n>`)
          : error,
      );
    });
    // Loopback only: the demo signs anybody in who types a name.
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function stop(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

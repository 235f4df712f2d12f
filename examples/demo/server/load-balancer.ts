/**
 * nginx in front of the nodes of a cluster: round robin, no stickiness, WebSocket upgrades
 * passed through. Started from a generated config in a directory of its own (prefix, pid,
 * logs, temp files), so it needs no system configuration and leaves nothing behind.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Where Debian's package puts nginx (scripts/install-nginx.sh installs it). */
export const NGINX = process.env.OUTPOST_NGINX ?? "/usr/sbin/nginx";

/** A running nginx. */
export interface LoadBalancer {
  /** The port clients connect to, on 127.0.0.1. */
  readonly port: number;
  /** Its directory: `nginx.conf`, `access.log`, `error.log`. */
  readonly dir: string;
  /**
   * The access log, one `{upstream, status, uri}` per finished request; a WebSocket
   * appears once it has closed. Query strings are never logged (they may carry tokens).
   */
  accessLog(): Array<{ upstream: string; status: number; uri: string }>;
  close(): Promise<void>;
}

/** Whether nginx is installed here. */
export function nginxAvailable(): boolean {
  if (!existsSync(NGINX)) return false;
  try {
    execFileSync(NGINX, ["-v"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** The nginx.conf for `upstreams` (ports on 127.0.0.1), listening on 127.0.0.1:`port`. */
export function nginxConfig(dir: string, port: number, upstreams: number[]): string {
  const servers = upstreams
    .map((p) => `    server 127.0.0.1:${p} max_fails=1 fail_timeout=2s;`)
    .join("\n");
  return `daemon off;
master_process on;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  # $uri, not $request: the query string may hold a token and must stay out of every log.
  log_format outpost escape=json '{"upstream":"$upstream_addr","status":$status,"uri":"$uri"}';
  access_log ${dir}/access.log outpost;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  map $http_upgrade $connection_upgrade { default upgrade; "" close; }
  # Plain round robin: no ip_hash, no cookies; any node serves any client.
  upstream outpost {
${servers}
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://outpost;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      # A quiet socket is not a dead one: Outpost pings every 30 s, nginx waits an hour.
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;
      proxy_buffering off;
      # A node that refuses the TCP connection (it died) is skipped for the next one.
      proxy_connect_timeout 2s;
      proxy_next_upstream error timeout;
    }
  }
}
`;
}

/** Start nginx in front of `upstreams`; resolves once it accepts connections. */
export async function startLoadBalancer(
  upstreams: number[],
  options: { port?: number } = {},
): Promise<LoadBalancer> {
  // nginx cannot listen on port 0; a port the kernel just handed out is free in practice,
  // and a lost race shows as nginx exiting, which is retried with another port.
  for (let attempt = 0; ; attempt++) {
    const port = options.port ?? (await freePort());
    try {
      return await startOn(port, upstreams);
    } catch (error) {
      if (options.port !== undefined || attempt >= 3) throw error;
    }
  }
}

async function startOn(port: number, upstreams: number[]): Promise<LoadBalancer> {
  const dir = mkdtempSync(join(tmpdir(), "outpost-nginx-"));
  const conf = join(dir, "nginx.conf");
  writeFileSync(conf, nginxConfig(dir, port, upstreams));
  // -e: the error log before the config is read, else nginx tries /var/log/nginx.
  const child: ChildProcess = spawn(NGINX, ["-p", dir, "-c", conf, "-e", join(dir, "error.log")], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = once(child, "exit");
  const remove = () => rmSync(dir, { recursive: true, force: true });
  try {
    await Promise.race([
      // nginx writes its pid file only once it holds its listening socket, so a port taken
      // by another program is an exit here, not a false start.
      written(join(dir, "nginx.pid")).then(() => accepting(port)),
      exited.then(() => {
        throw new Error(`nginx exited: ${stderr.trim() || readLog(join(dir, "error.log"))}`);
      }),
    ]);
  } catch (error) {
    child.kill("SIGKILL");
    remove();
    throw error;
  }
  let closing: Promise<void> | undefined;
  return {
    port,
    dir,
    accessLog() {
      return readLog(join(dir, "access.log"))
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as { upstream: string; status: number; uri: string });
    },
    close() {
      closing ??= (async () => {
        // SIGTERM: nginx's fast shutdown, which closes open WebSockets too.
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
        await exited;
        remove();
      })();
      return closing;
    },
  };
}

function readLog(path: string): string {
  return existsSync(path) ? readFileSync(path, "utf8") : "";
}

/** A port on 127.0.0.1 that nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once `path` exists and is not empty. */
async function written(path: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (readLog(path).trim() === "") {
    if (Date.now() > deadline) throw new Error(`nginx did not write ${path}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Resolves once something accepts TCP connections on 127.0.0.1:`port`. */
async function accepting(port: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = tcpConnect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

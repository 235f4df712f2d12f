import { agentNameToKebab } from "../protocol/frames.js";

/** Query parameters for the connection URL; `null` and `undefined` values are left out. */
export type QueryParams = Record<string, string | number | boolean | null | undefined>;

/** Where an agent lives, as given to `AgentClient` or `useAgent`. */
export interface AgentAddress {
  /** Agent class name (`MyAgent`) or its kebab form (`my-agent`). */
  agent: string;
  /** Instance name. Default `"default"`. */
  name?: string;
  /**
   * `host[:port]`, or a full `http(s)://` / `ws(s)://` URL (a path in it becomes a prefix).
   * Default: the page's own host in a browser.
   */
  host?: string;
  /** Force `ws` or `wss` instead of choosing from the host. */
  protocol?: "ws" | "wss";
  /**
   * A path to use instead of `agents/<agent>/<name>` (after any prefix in `host`), for a
   * server that routes by itself, e.g. by session. `agent` and `name` are then only
   * defaults until the server's identity frame names the instance.
   */
  basePath?: string;
  /** More path after the instance (or `basePath`): `settings` → `…/agents/a/room/settings`. */
  path?: string;
}

/**
 * The WebSocket URL of an agent instance:
 * `ws(s)://host/agents/<kebab-agent>/<name>[/path]?query`, or `ws(s)://host/<basePath>[/path]`.
 * A bare host gets `ws://` only when it is loopback or a private address, so a deployed
 * app never sends its token in clear text by accident.
 */
export function agentUrl(address: AgentAddress, query: QueryParams = {}): string {
  const base = baseUrl(address);
  const name = address.name ?? "default";
  const route = address.basePath
    ? pathSegments(address.basePath, "basePath")
    : `agents/${agentNameToKebab(address.agent)}/${encodeURIComponent(name)}`;
  const more = address.path ? `/${pathSegments(address.path, "path")}` : "";
  base.pathname = `${base.pathname.replace(/\/+$/, "")}/${route}${more}`;
  base.search = "";
  for (const [key, value] of Object.entries(query)) {
    if (value !== null && value !== undefined) base.searchParams.append(key, String(value));
  }
  base.hash = "";
  return base.href;
}

/**
 * A `path` or `basePath` made safe to append: each segment percent-encoded (slashes kept),
 * leading and trailing slashes dropped. `.` and `..` are refused: the URL would be
 * normalised to another instance's address.
 */
function pathSegments(path: string, option: string): string {
  const segments = path.replace(/^\/+|\/+$/g, "").split("/");
  return segments
    .map((segment) => {
      let decoded = segment;
      try {
        decoded = decodeURIComponent(segment);
      } catch {
        // Not percent-encoded: taken as written.
      }
      if (decoded === "." || decoded === "..") {
        throw new TypeError(`\`${option}\` must not contain "." or ".." segments`);
      }
      return encodeURIComponent(decoded);
    })
    .join("/");
}

/** The `http(s)://` form of an agent WebSocket URL, for `fetch` to the same address. */
export function httpUrlOf(wsUrl: string): string {
  return wsUrl.replace(/^ws(s?):/, "http$1:");
}

function baseUrl({ host, protocol }: AgentAddress): URL {
  if (host === undefined || host === "") {
    const location = (globalThis as { location?: { protocol: string; host: string } }).location;
    if (location === undefined || !/^https?:$/.test(location.protocol)) {
      throw new TypeError("`host` is required where there is no page location (e.g. in Node)");
    }
    const scheme = protocol ?? (location.protocol === "https:" ? "wss" : "ws");
    return new URL(`${scheme}://${location.host}`);
  }
  const schemeMatch = /^([a-z][a-z0-9+.-]*):\/\//i.exec(host);
  if (schemeMatch) {
    const url = new URL(host);
    const given = schemeMatch[1]!.toLowerCase();
    const secure = given === "https" || given === "wss";
    if (!secure && given !== "http" && given !== "ws") {
      throw new TypeError(`unsupported scheme in host: ${given}`);
    }
    return new URL(`${protocol ?? (secure ? "wss" : "ws")}://${url.host}${url.pathname}`);
  }
  const url = new URL(`ws://${host}`);
  return new URL(
    `${protocol ?? (isLocalHostname(url.hostname) ? "ws" : "wss")}://${url.host}${url.pathname}`,
  );
}

/**
 * True for names that never leave the machine or the local network: `localhost`,
 * 127.0.0.0/8, ::1, RFC 1918 and link-local IPv4, IPv6 unique-local and link-local.
 */
export function isLocalHostname(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[|\]$/g, "");
  if (host === "localhost" || host.endsWith(".localhost")) return true;
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host.replace(/^::ffff:/, ""));
  if (v4) {
    const [a, b] = [Number(v4[1]), Number(v4[2])];
    return (
      a === 127 ||
      a === 10 ||
      (a === 172 && b >= 16 && b <= 31) ||
      (a === 192 && b === 168) ||
      (a === 169 && b === 254) ||
      host === "0.0.0.0"
    );
  }
  if (host.includes(":")) {
    return host === "::1" || /^f[cd][0-9a-f]{0,2}:/.test(host) || /^fe[89ab][0-9a-f]?:/.test(host);
  }
  return false;
}

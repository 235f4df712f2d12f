import type { IncomingMessage } from "node:http";
import { isIP } from "node:net";

/**
 * The client's address for per-address limits and logs. Behind a trusted proxy it is the
 * last `X-Forwarded-For` entry (the one the proxy appended; anything left of it came from
 * the client and would let it pick its own address), without a port: `1.2.3.4:5678` and
 * `[::1]:5678` must land in the same bucket as `1.2.3.4` and `::1`.
 */
export function clientAddress(req: IncomingMessage, trustProxy: boolean): string | undefined {
  if (trustProxy) {
    const forwarded = req.headers["x-forwarded-for"];
    const last = (Array.isArray(forwarded) ? forwarded.at(-1) : forwarded)
      ?.split(",")
      .at(-1)
      ?.trim();
    if (last) return withoutPort(last);
  }
  return req.socket.remoteAddress;
}

/** `1.2.3.4:80` → `1.2.3.4`, `[::1]:80` → `::1`, `[::1]` → `::1`; bare addresses unchanged. */
export function withoutPort(address: string): string {
  if (address.startsWith("[")) {
    const end = address.indexOf("]");
    return end === -1 ? address : address.slice(1, end);
  }
  if (isIP(address) !== 0) return address;
  const colon = address.lastIndexOf(":");
  // One colon: IPv4 (or a name) with a port. More than one: an IPv6 address, left alone.
  if (colon !== -1 && address.indexOf(":") === colon) return address.slice(0, colon);
  return address;
}

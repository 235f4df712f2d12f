/**
 * Mutual TLS for node links: every node presents a certificate the cluster's own CA signed
 * and accepts only peers that do, so a link can be neither read nor joined by anyone on the
 * network between the nodes. The link credential (see `link-auth.ts`) is still checked on
 * top, inside the encrypted channel.
 */
import type { SecureContextOptions } from "node:tls";
import { createSecureContext } from "node:tls";
import { ClusterOptionError } from "./errors.js";

/** A node's certificate, its private key and the cluster's CA, as PEM text. */
export interface LinkTls {
  /** This node's certificate (PEM; a chain may follow it). Its names must cover the advertised host. */
  cert: string | Buffer;
  /** The certificate's private key (PEM, unencrypted). */
  key: string | Buffer;
  /** The CA that signed every node's certificate (PEM). Peers signed by anything else are refused. */
  ca: string | Buffer;
}

const PEM = /-----BEGIN [A-Z0-9 ]+-----/;

/**
 * `cluster.tls` checked at startup: the three parts present, PEM, and the key the
 * certificate's. Names the part and the problem, never the key's content.
 */
export function linkTls(value: unknown): LinkTls | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "object" || value === null) {
    throw new ClusterOptionError("cluster.tls", "must be { cert, key, ca } (PEM text)");
  }
  const parts = value as Record<string, unknown>;
  for (const part of ["cert", "key", "ca"] as const) {
    const pem = parts[part];
    const text = Buffer.isBuffer(pem) ? pem.toString("latin1") : pem;
    if (typeof text !== "string" || !PEM.test(text)) {
      throw new ClusterOptionError(
        `cluster.tls.${part}`,
        "must be PEM text (-----BEGIN …-----), e.g. readFileSync(path, 'utf8')",
      );
    }
  }
  const tls = parts as unknown as LinkTls;
  try {
    createSecureContext(secureContext(tls));
  } catch (error) {
    // OpenSSL's reason ("key values mismatch", "no start line"), without any of the PEM.
    const reason = String((error as Error).message ?? error)
      .split("\n")[0]!
      .slice(0, 200);
    throw new ClusterOptionError("cluster.tls", `cannot be used: ${reason}`);
  }
  return { cert: tls.cert, key: tls.key, ca: tls.ca };
}

function secureContext(tls: LinkTls): SecureContextOptions {
  return { cert: tls.cert, key: tls.key, ca: tls.ca, minVersion: "TLSv1.2" };
}

/** What the link endpoint's HTTPS server is created with: a certificate is required of every peer. */
export function tlsServerOptions(tls: LinkTls) {
  return { ...secureContext(tls), requestCert: true, rejectUnauthorized: true };
}

/** What a dial to a peer is opened with: the peer's certificate must be the CA's, its name the address's. */
export function tlsClientOptions(tls: LinkTls) {
  return { ...secureContext(tls), rejectUnauthorized: true };
}

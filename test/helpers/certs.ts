import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { LinkTls } from "../../src/cluster/link-tls.js";
import { tempDir } from "./server.js";

/** A CA of the test's own and certificates it signed, made with the system's `openssl`. */
export interface TestCa {
  ca: string;
  /** A node certificate and key for `names` (default `IP:127.0.0.1,DNS:localhost`), as `cluster.tls`. */
  issue(names?: string): LinkTls;
  /** Where the PEM files are; `remove()` deletes them. */
  dir: string;
  remove(): void;
}

const openssl = (args: string[], cwd: string) =>
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });

/** Short-lived P-256 keys: quick to make, and what a cluster's own CA would hand out. */
export function createTestCa(name = "outpost-test-ca"): TestCa {
  const { dir, remove } = tempDir("outpost-ca-");
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(
    [
      "req",
      "-x509",
      ...ec,
      "-keyout",
      "ca.key",
      "-out",
      "ca.crt",
      "-days",
      "2",
      "-subj",
      `/CN=${name}`,
    ],
    dir,
  );
  const ca = readFileSync(join(dir, "ca.crt"), "utf8");
  let serial = 0;
  return {
    ca,
    dir,
    remove,
    issue(names = "IP:127.0.0.1,DNS:localhost") {
      const id = `node-${++serial}`;
      openssl(
        ["req", ...ec, "-keyout", `${id}.key`, "-out", `${id}.csr`, "-subj", `/CN=${id}`],
        dir,
      );
      writeFileSync(
        join(dir, `${id}.ext`),
        `subjectAltName=${names}\nextendedKeyUsage=serverAuth,clientAuth\n`,
      );
      openssl(
        [
          "x509",
          "-req",
          "-in",
          `${id}.csr`,
          "-CA",
          "ca.crt",
          "-CAkey",
          "ca.key",
          "-CAcreateserial",
          "-out",
          `${id}.crt`,
          "-days",
          "2",
          "-extfile",
          `${id}.ext`,
        ],
        dir,
      );
      return {
        cert: readFileSync(join(dir, `${id}.crt`), "utf8"),
        key: readFileSync(join(dir, `${id}.key`), "utf8"),
        ca,
      };
    },
  };
}

import { describe, expect, it } from "vitest";
import { ClusterOptionError } from "../../src/cluster/errors.js";
import { advertiseAddress, resolveClusterOptions } from "../../src/cluster/options.js";

const URL = "postgres://app:s3cret-password@127.0.0.1:5432/app";

/** The error `resolveClusterOptions` throws for `input`. */
function refusal(input: unknown): ClusterOptionError {
  try {
    resolveClusterOptions(input);
  } catch (error) {
    expect(error).toBeInstanceOf(ClusterOptionError);
    return error as ClusterOptionError;
  }
  throw new Error("the options were accepted");
}

describe("cluster options", () => {
  it("applies the documented defaults", () => {
    const options = resolveClusterOptions({ postgres: URL });
    expect(options).toMatchObject({
      postgres: URL,
      schema: "outpost",
      advertise: undefined,
      leaseMs: 5_000,
      heartbeatMs: 1_000,
      fenceMarginMs: 1_500,
      authReloadMs: 5_000,
    });
    expect(options.nodeId).toMatch(/.+-[0-9a-f]{8}$/);
    expect(resolveClusterOptions({ postgres: URL }).nodeId).not.toBe(options.nodeId);
  });

  it("names the option in every error, with a stable code", () => {
    const cases: [unknown, string][] = [
      [undefined, "cluster"],
      [{}, "cluster.postgres"],
      [{ postgres: "" }, "cluster.postgres"],
      [{ postgres: "mysql://127.0.0.1/app" }, "cluster.postgres"],
      [{ postgres: "not a url" }, "cluster.postgres"],
      [{ postgres: URL, schema: "Outpost" }, "cluster.schema"],
      [{ postgres: URL, schema: "x; DROP TABLE users" }, "cluster.schema"],
      [{ postgres: URL, schema: "1st" }, "cluster.schema"],
      [{ postgres: URL, schema: "a".repeat(64) }, "cluster.schema"],
      [{ postgres: URL, advertise: "10.0.0.5:8787" }, "cluster.advertise"],
      [{ postgres: URL, advertise: "ws://10.0.0.5:8787/path" }, "cluster.advertise"],
      [{ postgres: URL, leaseMs: 100 }, "cluster.leaseMs"],
      [{ postgres: URL, heartbeatMs: 1.5 }, "cluster.heartbeatMs"],
      [{ postgres: URL, leaseMs: 5_000, fenceMarginMs: 5_000 }, "cluster.fenceMarginMs"],
      [{ postgres: URL, leaseMs: 5_000, heartbeatMs: 3_000 }, "cluster.heartbeatMs"],
      [{ postgres: URL, nodeId: "" }, "cluster.nodeId"],
      [{ postgres: URL, lease: 5_000 }, "cluster.lease"],
    ];
    for (const [input, option] of cases) {
      const error = refusal(input);
      expect(error.code, JSON.stringify(input)).toBe("ERR_CLUSTER_OPTION");
      expect(error.option, JSON.stringify(input)).toBe(option);
      expect(error.message.startsWith(`${option} `)).toBe(true);
    }
  });

  it("never repeats the connection URL (it may hold a password) in an error", () => {
    const withPassword = "mysql://app:s3cret-password@127.0.0.1/app";
    const error = refusal({ postgres: withPassword, schema: "Bad" });
    expect(error.message).not.toContain("s3cret");
    expect(refusal({ postgres: withPassword }).message).not.toContain("s3cret");
  });

  it("advertises the listening address by default, 127.0.0.1 for a wildcard, and a given address as is", () => {
    const options = resolveClusterOptions({ postgres: URL });
    expect(advertiseAddress(options, { hostname: "127.0.0.1", port: 8787 })).toBe(
      "ws://127.0.0.1:8787",
    );
    expect(advertiseAddress(options, { hostname: "0.0.0.0", port: 9000 })).toBe(
      "ws://127.0.0.1:9000",
    );
    expect(advertiseAddress(options, { hostname: "::", port: 9000 })).toBe("ws://127.0.0.1:9000");
    expect(advertiseAddress(options, { hostname: "::1", port: 9000 })).toBe("ws://[::1]:9000");
    const given = resolveClusterOptions({
      postgres: URL,
      advertise: "wss://node-1.internal:8443/",
    });
    expect(advertiseAddress(given, { hostname: "0.0.0.0", port: 9000 })).toBe(
      "wss://node-1.internal:8443",
    );
  });
});

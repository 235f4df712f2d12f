import { describe, expect, it } from "vitest";
import { agentUrl, isLocalHostname } from "../../src/client/url.js";

describe("agentUrl", () => {
  it("uses ws:// for loopback and private hosts and wss:// for public ones", () => {
    for (const host of [
      "localhost:8787",
      "127.0.0.1:1999",
      "127.8.9.10",
      "[::1]:8080",
      "10.1.2.3",
      "172.20.0.5:80",
      "192.168.1.10:3000",
      "app.localhost",
    ]) {
      expect(agentUrl({ agent: "Chat", host })).toMatch(/^ws:\/\//);
    }
    for (const host of [
      "agents.example.com",
      "172.32.0.1",
      "8.8.8.8:443",
      "my-agent.example.workers.dev",
    ]) {
      expect(agentUrl({ agent: "Chat", host })).toMatch(/^wss:\/\//);
    }
  });

  it("takes the scheme from a full URL, and `protocol` overrides both", () => {
    expect(agentUrl({ agent: "MyAgent", host: "https://my-agent.example.workers.dev" })).toBe(
      "wss://my-agent.example.workers.dev/agents/my-agent/default",
    );
    expect(agentUrl({ agent: "MyAgent", host: "http://10.0.0.2:8787" })).toBe(
      "ws://10.0.0.2:8787/agents/my-agent/default",
    );
    expect(agentUrl({ agent: "MyAgent", host: "ws://example.com" })).toMatch(
      /^ws:\/\/example\.com\//,
    );
    expect(agentUrl({ agent: "MyAgent", host: "localhost:1", protocol: "wss" })).toMatch(/^wss:/);
    expect(agentUrl({ agent: "MyAgent", host: "https://example.com", protocol: "ws" })).toMatch(
      /^ws:/,
    );
  });

  it("keeps a path prefix of a full URL", () => {
    expect(agentUrl({ agent: "Chat", host: "https://example.com/api/" })).toBe(
      "wss://example.com/api/agents/chat/default",
    );
  });

  it("kebab-cases the agent, encodes the name and skips null query values", () => {
    expect(
      agentUrl(
        { agent: "ChatRoom", name: "team a/b", host: "localhost:1" },
        { token: "t.k.n", userId: "u1", empty: null, missing: undefined, n: 3 },
      ),
    ).toBe("ws://localhost:1/agents/chat-room/team%20a%2Fb?token=t.k.n&userId=u1&n=3");
  });

  it("appends `path` after the instance, as the official client does", () => {
    expect(
      agentUrl({ agent: "MyAgent", name: "room", host: "localhost:1", path: "settings" }),
    ).toBe("ws://localhost:1/agents/my-agent/room/settings");
    expect(
      agentUrl({ agent: "MyAgent", name: "room", host: "localhost:1", path: "/a b/c/" }, { t: 1 }),
    ).toBe("ws://localhost:1/agents/my-agent/room/a%20b/c?t=1");
  });

  it("uses `basePath` instead of /agents/<agent>/<name>, after the host's prefix, with `path` after it", () => {
    expect(
      agentUrl({ agent: "UserAgent", name: "ignored", host: "localhost:1", basePath: "user" }),
    ).toBe("ws://localhost:1/user");
    expect(
      agentUrl({
        agent: "UserAgent",
        host: "https://example.com/api",
        basePath: "/v1/user/",
        path: "settings",
      }),
    ).toBe("wss://example.com/api/v1/user/settings");
  });

  it("encodes path segments once and refuses . and .. that would reach another address", () => {
    expect(agentUrl({ agent: "A", host: "localhost:1", path: "x%2Fy/z" })).toBe(
      "ws://localhost:1/agents/a/default/x%2Fy/z",
    );
    for (const path of ["../other", "a/./b", "%2E%2E", "a/.."]) {
      expect(() => agentUrl({ agent: "A", name: "mine", host: "localhost:1", path })).toThrow(
        /"\." or "\.\."/,
      );
      expect(() => agentUrl({ agent: "A", host: "localhost:1", basePath: path })).toThrow(
        /basePath/,
      );
    }
  });

  it("refuses a missing host where there is no page location, and odd schemes", () => {
    expect(() => agentUrl({ agent: "Chat" })).toThrow(/host/);
    expect(() => agentUrl({ agent: "Chat", host: "ftp://example.com" })).toThrow(/scheme/);
  });
});

describe("isLocalHostname", () => {
  it("knows loopback, RFC 1918, link-local and IPv6 local ranges", () => {
    expect(
      ["::1", "[::1]", "fd12::1", "fe80::1", "169.254.1.1", "0.0.0.0"].every(isLocalHostname),
    ).toBe(true);
    expect(
      ["1.1.1.1", "2001:db8::1", "example.com", "localhost.example.com"].some(isLocalHostname),
    ).toBe(false);
  });
});

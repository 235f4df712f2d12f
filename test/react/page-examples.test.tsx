// @vitest-environment jsdom
// biome-ignore-all lint/correctness/noComponentHookFactories: each snippet of the page stays whole inside its own test
/**
 * The client code of Cloudflare's "Cross-domain authentication" page, run against Outpost
 * with only the import changed (`agents/react` → the `outpost/react` source). The one line
 * added to each component hands `agent` to the test where the page has a comment; hosts
 * the page points at Workers are this test's servers.
 */
import { act, cleanup, render, screen, waitFor } from "@testing-library/react";
import type { ReactNode } from "react";
import { Suspense, useCallback } from "react";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import WebSocket from "ws";
import { readTokenTimes } from "../../src/client/jwt.js";
import {
  Agent,
  type Connection,
  type ConnectionContext,
  callable,
  getCurrentAgent,
  type ServeHandle,
  serve,
} from "../../src/index.js";
import { dropCachedQuery, type UseAgentResult, useAgent } from "../../src/react/index.js";
import { type Outpost, startOutpost } from "../client/fixtures.js";

/** The page's agent, minus its own token check (these examples use demo tokens). */
class MyAgent extends Agent<unknown, { greeting: string }> {
  override initialState = { greeting: "hello" };
  static connects: Array<Record<string, string>> = [];

  override onConnect(connection: Connection, ctx: ConnectionContext) {
    const params = Object.fromEntries(new URL(ctx.request.url).searchParams);
    MyAgent.connects.push(params);
    connection.setState({ userId: params.userId, authenticated: true });
  }

  @callable()
  whoami() {
    return (getCurrentAgent().connection?.state as { userId?: string } | undefined)?.userId;
  }
}

/** Vitest's jsdom environment exposes its JSDOM instance. */
declare const jsdom: { reconfigure(options: { url: string }): void };
let plain: ServeHandle;
let dataDir: string;
let outpost: Outpost;
let agent: UseAgentResult | undefined;
const probe = (value: UseAgentResult) => {
  agent = value;
  return null;
};

const jsdomWebSocket = globalThis.WebSocket;
beforeAll(async () => {
  // jsdom's own WebSocket (undici's) fires events of another realm under Vitest.
  globalThis.WebSocket = WebSocket as unknown as typeof globalThis.WebSocket;
  const { mkdtempSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  dataDir = mkdtempSync(`${tmpdir()}/outpost-page-`);
  plain = await serve({
    agents: { MyAgent },
    port: 0,
    hostname: "127.0.0.1",
    dataDir,
    logger: false,
    handleSignals: false,
  });
  outpost = await startOutpost();
});
afterEach(() => {
  cleanup();
  dropCachedQuery();
  agent = undefined;
  MyAgent.connects = [];
  vi.unstubAllGlobals();
});
afterAll(async () => {
  globalThis.WebSocket = jsdomWebSocket;
  await plain.close();
  await outpost.dispose();
  const { rmSync } = await import("node:fs");
  rmSync(dataDir, { recursive: true, force: true });
});

async function mount(ui: ReactNode) {
  await act(async () => {
    render(ui);
  });
}

/** The page is served from the agent's own origin in the same-origin examples. */
function servePageFrom(url: string) {
  jsdom.reconfigure({ url: `${url}/app` });
}

// The helpers the page leaves to the app.
async function getAuthToken() {
  await new Promise((resolve) => setTimeout(resolve, 50));
  return "token-from-api";
}
async function getCurrentUser() {
  return { id: "user-42" };
}

describe("the page's examples, with only the import changed", () => {
  it("static authentication", async () => {
    servePageFrom(plain.url);

    function ChatComponent() {
      const agent = useAgent({
        agent: "my-agent",
        query: {
          token: "demo-token-123",
          userId: "demo-user",
        },
      });
      return probe(agent);
    }

    await mount(<ChatComponent />);
    await waitFor(() => expect(agent?.readyState).toBe(1));
    expect(MyAgent.connects).toEqual([{ token: "demo-token-123", userId: "demo-user" }]);
    expect(agent!.state).toEqual({ greeting: "hello" });
    expect(await agent!.call("whoami")).toBe("demo-user");
  });

  it("async authentication with Suspense", async () => {
    servePageFrom(plain.url);

    function ChatComponent() {
      const asyncQuery = useCallback(async () => {
        const [token, user] = await Promise.all([getAuthToken(), getCurrentUser()]);
        return {
          token,
          userId: user.id,
          timestamp: Date.now().toString(),
        };
      }, []);
      const agent = useAgent({
        agent: "my-agent",
        query: asyncQuery,
      });
      return probe(agent);
    }
    function App() {
      return (
        <Suspense fallback={<div>Authenticating...</div>}>
          <ChatComponent />
        </Suspense>
      );
    }

    await mount(<App />);
    expect(screen.getByText("Authenticating...")).toBeTruthy();
    await waitFor(() => expect(agent?.readyState).toBe(1));
    expect(screen.queryByText("Authenticating...")).toBeNull();
    expect(MyAgent.connects[0]).toMatchObject({ token: "token-from-api", userId: "user-42" });
    expect(await agent!.stub.whoami!()).toBe("user-42");
  });

  it("static cross-domain auth", async () => {
    servePageFrom("https://app.example.com");
    const AGENT_HOST = plain.url; // the page: "https://my-agent.example.workers.dev"

    function StaticCrossDomainAuth() {
      const agent = useAgent({
        agent: "my-agent",
        host: AGENT_HOST,
        query: {
          token: "demo-token-123",
          userId: "demo-user",
        },
      });
      return probe(agent);
    }

    await mount(<StaticCrossDomainAuth />);
    await waitFor(() => expect(agent?.readyState).toBe(1));
    expect(MyAgent.connects).toEqual([{ token: "demo-token-123", userId: "demo-user" }]);
  });

  it("async cross-domain auth", async () => {
    servePageFrom("https://app.example.com");
    const AGENT_HOST = plain.url;

    function AsyncCrossDomainAuth() {
      const asyncQuery = useCallback(async () => {
        const [token, user] = await Promise.all([getAuthToken(), getCurrentUser()]);
        return {
          token,
          userId: user.id,
          timestamp: Date.now().toString(),
        };
      }, []);
      const agent = useAgent({
        agent: "my-agent",
        host: AGENT_HOST,
        query: asyncQuery,
      });
      return probe(agent);
    }

    await mount(
      <Suspense fallback={<div>Authenticating...</div>}>
        <AsyncCrossDomainAuth />
      </Suspense>,
    );
    await waitFor(() => expect(agent?.readyState).toBe(1));
    expect(MyAgent.connects[0]).toMatchObject({ token: "token-from-api", userId: "user-42" });
  });

  it("JWT refresh pattern: stays connected past token expiry with no refresh code", async () => {
    servePageFrom(outpost.server.url);
    const API_HOST = "http://127.0.0.1:9";
    const issued: string[] = [];
    // The app's API: a token is valid until its `exp`.
    vi.stubGlobal(
      "fetch",
      vi.fn(async (_url: string, init: { headers: Record<string, string> }) => {
        const token = init.headers.Authorization!.replace("Bearer ", "");
        const times = readTokenTimes(token);
        return { ok: times !== undefined && times.expiresAt > Date.now() };
      }),
    );
    localStorage.setItem("jwt", await outpost.token("default", 1, "user-42"));
    await new Promise((resolve) => setTimeout(resolve, 1100));

    const validateToken = async (token: string) => {
      // An example of how you might implement this
      const res = await fetch(`${API_HOST}/api/users/me`, {
        headers: {
          Authorization: `Bearer ${token}`,
        },
      });
      return res.ok;
    };
    const refreshToken = async () => {
      // Depends on implementation: here, the app's backend issues a 2-second token.
      const token = await outpost.token("default", 2, "user-42");
      issued.push(token);
      return token;
    };
    function useJWTAgent(agentName: string) {
      const asyncQuery = useCallback(async () => {
        let token = localStorage.getItem("jwt");
        // If no token OR the token is no longer valid
        // request a fresh token
        if (!token || !(await validateToken(token))) {
          token = await refreshToken();
          localStorage.setItem("jwt", token);
        }
        return {
          token,
        };
      }, []);
      const agent = useAgent({
        agent: agentName,
        query: asyncQuery,
        queryDeps: [], // Run on mount
      });
      return agent;
    }
    function Chat() {
      probe(useJWTAgent("lab"));
      return null;
    }

    await mount(
      <Suspense fallback={null}>
        <Chat />
      </Suspense>,
    );
    await waitFor(() => expect(agent?.readyState).toBe(1));
    expect(issued).toHaveLength(1);
    // Past the 2-second token's expiry: the server closes 4001, the hook re-runs the page's
    // query, which sees the token is no longer valid and refreshes it.
    await new Promise((resolve) => setTimeout(resolve, 2600));
    await waitFor(() => expect(agent?.readyState).toBe(1));
    expect(issued.length).toBeGreaterThanOrEqual(2);
    expect(localStorage.getItem("jwt")).toBe(issued.at(-1));
    expect(agent!.connectionError).toBeNull();
    expect(await agent!.call("whoami")).toBe("user-42");
  });
});

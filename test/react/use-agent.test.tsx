// @vitest-environment jsdom
import { act, cleanup, type RenderResult, render, screen, waitFor } from "@testing-library/react";
import { type ReactNode, StrictMode, Suspense } from "react";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { AgentClient, type QueryParams } from "../../src/client/index.js";
import { dropCachedQuery, type UseAgentResult, useAgent } from "../../src/react/index.js";
import { type LabState, type Outpost, startOutpost } from "../client/fixtures.js";

let outpost: Outpost;
let instance = 0;
const room = () => `hook-room-${++instance}`;
const connections = () => outpost.server.stats().connections;
/** The hook's last result, for the test to call through. */
const seen = new Map<string, UseAgentResult<LabState>>();

// jsdom's own WebSocket (undici's) fires events of another realm under Vitest; a browser's
// does not, so stand in with `ws`, as a Node app would.
const jsdomWebSocket = globalThis.WebSocket;
beforeAll(async () => {
  globalThis.WebSocket = WebSocket as unknown as typeof globalThis.WebSocket;
  outpost = await startOutpost();
});
afterEach(() => {
  cleanup();
  dropCachedQuery();
  // An unmounted hook's last result still reads readyState 1: a later test must not see it.
  seen.clear();
});
afterAll(async () => {
  globalThis.WebSocket = jsdomWebSocket;
  await outpost.dispose();
});

function Count(props: {
  id?: string;
  name: string;
  query: (() => Promise<QueryParams>) | QueryParams;
  queryDeps?: unknown[];
}) {
  const agent = useAgent<LabState>({
    agent: "Lab",
    name: props.name,
    host: outpost.server.url,
    query: props.query,
    queryDeps: props.queryDeps,
    reconnect: { minDelay: 20, maxDelay: 100 },
  });
  seen.set(props.id ?? "main", agent);
  return <output data-testid={props.id ?? "main"}>{agent.state?.count ?? "…"}</output>;
}

/** A hook whose connection can be switched off with `enabled`. */
function Switchable(props: { name: string; token: string; enabled: boolean }) {
  const agent = useAgent<LabState>({
    agent: "Lab",
    name: props.name,
    host: outpost.server.url,
    query: { token: props.token },
    enabled: props.enabled,
    reconnect: { minDelay: 20, maxDelay: 100 },
  });
  seen.set("switchable", agent);
  return <output data-testid="switchable">{agent.identified ? "on" : "off"}</output>;
}

/** The page's pattern: a query that depends on who is signed in, with `queryDeps: [user]`. */
function SignedIn({ name, user, runs }: { name: string; user: string; runs: string[] }) {
  const query = async () => {
    runs.push(user);
    return { token: await outpost.token(name, 60, user) };
  };
  return (
    <Suspense fallback={<p>Authenticating...</p>}>
      <Count name={name} query={query} queryDeps={[user]} />
    </Suspense>
  );
}

/** A hook pointed at an agent class the server does not have. */
function Unknown() {
  const agent = useAgent({ agent: "NoSuchAgent", name: "x", host: outpost.server.url });
  seen.set("unknown", agent as UseAgentResult<LabState>);
  return null;
}

const text = (id = "main") => screen.getByTestId(id).textContent;

/** Render inside an async `act`, so React 19 retries what suspended once its promise settles. */
async function mount(ui: ReactNode): Promise<RenderResult> {
  let result!: RenderResult;
  await act(async () => {
    result = render(ui);
  });
  return result;
}

describe("useAgent", () => {
  it("shows the Suspense fallback while an async query runs, then the agent's state", async () => {
    const name = room();
    let release!: (params: QueryParams) => void;
    const query = () => new Promise<QueryParams>((resolve) => (release = resolve));
    await mount(
      <Suspense fallback={<p>Authenticating...</p>}>
        <Count name={name} query={query} />
      </Suspense>,
    );
    expect(screen.getByText("Authenticating...")).toBeTruthy();
    await act(async () => release({ token: await outpost.token(name) }));
    await waitFor(() => expect(text()).toBe("0"));
    expect(screen.queryByText("Authenticating...")).toBeNull();
  });

  it("re-renders when another client changes the state", async () => {
    const name = room();
    await mount(<Count name={name} query={{ token: await outpost.token(name) }} />);
    await waitFor(() => expect(text()).toBe("0"));
    const other = new AgentClient({
      agent: "Lab",
      name,
      host: outpost.server.url,
      WebSocket,
      query: { token: await outpost.token(name) },
    });
    try {
      await other.call("increment", [4]);
      await waitFor(() => expect(text()).toBe("4"));
    } finally {
      other.close();
    }
  });

  it("sets state, calls and streams through the returned object", async () => {
    const name = room();
    await mount(<Count name={name} query={{ token: await outpost.token(name) }} />);
    await waitFor(() => expect(seen.get("main")?.readyState).toBe(1));
    const agent = seen.get("main")!;
    expect(agent.agent).toBe("lab");
    expect(agent.name).toBe(name);
    act(() => agent.setState({ count: 10 }));
    await waitFor(() => expect(text()).toBe("10"));
    expect(await agent.stub.increment!(1)).toBe(11);
    const chunks: unknown[] = [];
    await agent.call("countdown", [2], { stream: { onChunk: (c) => chunks.push(c) } });
    expect(chunks).toEqual([2, 1]);
    await waitFor(() => expect(text()).toBe("11"));
  });

  it("passes the socket's events to listeners added on the returned object", async () => {
    const name = room();
    await mount(<Count name={name} query={{ token: await outpost.token(name) }} />);
    await waitFor(() => expect(seen.get("main")?.readyState).toBe(1));
    const agent = seen.get("main")!;
    const frames: string[] = [];
    const all: string[] = [];
    const listener = (event: MessageEvent) => frames.push(String(event.data));
    agent.addEventListener("message", listener);
    agent.addEventListener("message", (event) => all.push(String(event.data)));
    agent.send("first");
    await waitFor(() => expect(frames).toContain("echo:first"));
    agent.removeEventListener("message", listener);
    agent.send("second");
    await waitFor(() => expect(all).toContain("echo:second"));
    expect(frames).not.toContain("echo:second");
  });

  it("returns identified, path and getHttpUrl as the official hook does", async () => {
    const name = room();
    const token = await outpost.token(name);
    await mount(<Count name={name} query={{ token }} />);
    await waitFor(() => expect(seen.get("main")?.identified).toBe(true));
    const agent = seen.get("main")!;
    expect(agent.path).toEqual([{ agent: "lab", name }]);
    const url = new URL(agent.getHttpUrl());
    expect(url.pathname).toBe(`/agents/lab/${name}`);
    expect(url.searchParams.get("token")).toBe(token);
  });

  it("opens no socket while enabled is false, connects when it turns true, and closes when it turns false", async () => {
    const name = room();
    const token = await outpost.token(name);
    const { rerender } = await mount(<Switchable name={name} token={token} enabled={false} />);
    // The enabled twin below opens one; this one must still have none when it has.
    await mount(<Count id="twin" name={name} query={{ token }} />);
    await waitFor(() => expect(seen.get("twin")?.identified).toBe(true));
    expect(connections()).toBe(1);
    expect(seen.get("switchable")!.status).toEqual({ state: "closed", reason: "not_started" });
    await act(async () => rerender(<Switchable name={name} token={token} enabled />));
    await waitFor(() => expect(screen.getByTestId("switchable").textContent).toBe("on"));
    expect(connections()).toBe(2);
    await act(async () => rerender(<Switchable name={name} token={token} enabled={false} />));
    await waitFor(() => expect(connections()).toBe(1));
    expect(seen.get("switchable")!.status).toEqual({ state: "closed", reason: "closed_by_client" });
  });

  it("reconnects with a fresh query result when queryDeps change, closing the old socket", async () => {
    const name = room();
    const runs: string[] = [];
    const { rerender } = await mount(<SignedIn name={name} user="ada" runs={runs} />);
    await waitFor(() => expect(seen.get("main")?.readyState).toBe(1));
    expect(await seen.get("main")!.call("whoami")).toBe("ada");
    const first = seen.get("main")!.client;

    await act(async () => rerender(<SignedIn name={name} user="grace" runs={runs} />));
    await waitFor(() => expect(seen.get("main")?.client).not.toBe(first));
    await waitFor(() => expect(seen.get("main")?.readyState).toBe(1));
    expect(await seen.get("main")!.call("whoami")).toBe("grace");
    expect(first.status).toEqual({ state: "closed", reason: "closed_by_client" });
    await waitFor(() => expect(connections()).toBe(1));
    expect(runs).toEqual(["ada", "grace"]);
  });

  it("closes its socket on unmount", async () => {
    const name = room();
    const { unmount } = await mount(
      <Count name={name} query={{ token: await outpost.token(name) }} />,
    );
    await waitFor(() => expect(seen.get("main")?.readyState).toBe(1));
    expect(connections()).toBe(1);
    unmount();
    await waitFor(() => expect(connections()).toBe(0));
  });

  it("opens one socket under StrictMode's double mount, and none after unmount", async () => {
    const name = room();
    let runs = 0;
    const query = async () => {
      runs++;
      return { token: await outpost.token(name) };
    };
    const { unmount } = await mount(
      <StrictMode>
        <Suspense fallback={null}>
          <Count name={name} query={query} />
        </Suspense>
      </StrictMode>,
    );
    await waitFor(() => expect(text()).toBe("0"));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(connections()).toBe(1);
    expect(runs).toBe(1);
    unmount();
    await waitFor(() => expect(connections()).toBe(0));
  });

  it("shares one query result between components mounted together", async () => {
    const name = room();
    let runs = 0;
    const query = async () => {
      runs++;
      return { token: await outpost.token(name) };
    };
    await mount(
      <Suspense fallback={null}>
        <Count id="a" name={name} query={query} />
        <Count id="b" name={name} query={query} />
      </Suspense>,
    );
    await waitFor(() => expect([text("a"), text("b")]).toEqual(["0", "0"]));
    expect(runs).toBe(1);
  });

  it("drops the cached token on a 4001 and fetches a fresh one for every component", async () => {
    const name = room();
    const tokens: string[] = [];
    const query = async () => {
      const token = tokens.length === 0 ? "stale-token" : await outpost.token(name);
      tokens.push(token);
      return { token };
    };
    await mount(
      <Suspense fallback={null}>
        <Count id="a" name={name} query={query} />
      </Suspense>,
    );
    await waitFor(() => expect(text("a")).toBe("0"));
    expect(tokens).toHaveLength(2);
    expect(seen.get("a")!.connectionError).toBeNull();
    // A component mounted afterwards gets the fresh token from the cache, not the refused one.
    await mount(
      <Suspense fallback={null}>
        <Count id="b" name={name} query={query} />
      </Suspense>,
    );
    await waitFor(() => expect(text("b")).toBe("0"));
    expect(tokens).toHaveLength(2);
  });

  it("surfaces connectionError and re-renders when the server refuses for good", async () => {
    const name = room();
    await mount(<Count name={name} query={{ token: await outpost.token(`${name}-other`) }} />);
    await waitFor(() => expect(seen.get("main")?.connectionError?.code).toBe("forbidden"));
    expect(seen.get("main")!.readyState).toBe(3);
  });

  it("surfaces an unknown agent as a final not_found connectionError naming it, without retrying", async () => {
    await mount(<Unknown />);
    await waitFor(() => expect(seen.get("unknown")?.connectionError?.code).toBe("not_found"));
    expect(seen.get("unknown")!.connectionError!.message).toContain(
      'no agent "no-such-agent" at 127.0.0.1:',
    );
    expect(seen.get("unknown")!.readyState).toBe(3);
  });
});

import { renderToString } from "react-dom/server";
import { expect, it } from "vitest";
// Importing is part of what is tested: this file runs in Node, where there is no `window`.
import { useAgent } from "../../src/react/index.js";

let sockets = 0;
class CountingWebSocket {
  constructor() {
    sockets++;
  }
}

function Page({ host }: { host?: string }) {
  const agent = useAgent<{ count: number }>({
    agent: "Counter",
    host,
    query: { token: "t" },
    WebSocket: CountingWebSocket,
  });
  return <p>{agent.state?.count ?? "loading"}</p>;
}

it("imports and renders where there is no window, without opening a socket", async () => {
  expect(typeof window).toBe("undefined");
  expect(renderToString(<Page host="agents.example.com" />)).toBe("<p>loading</p>");
  // No host and no page location: fine until something connects, which a server render never does.
  expect(renderToString(<Page />)).toBe("<p>loading</p>");
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(sockets).toBe(0);
});

import { AGENT_HOST } from "../api.js";

/**
 * "Same origin": a page served by the agent server itself can use an HTTP-only session
 * cookie, because the browser sends it with the WebSocket handshake. This panel links to
 * that page; its messages show up in every other panel "via cookie".
 */
export function CookieSessionPanel() {
  const agentOrigin = new URL(AGENT_HOST).origin;
  return (
    <section className="panel" data-testid="panel-cookie">
      <header>
        <h2>Same-origin cookie session</h2>
      </header>
      <div className="intro">
        The agent server at <code>{agentOrigin}</code> serves a page of its own. It signs you in
        through this app (a one-minute token handed to the agent server, which swaps it for an
        HTTP-only, <code>SameSite=Strict</code> cookie), then connects with{" "}
        <code>useAgent({'{ agent: "room" }'})</code> and no token at all.
      </div>
      <p>
        <a
          data-testid="cookie-page-link"
          href={`${agentOrigin}/session/start`}
          target="_blank"
          rel="noreferrer"
        >
          Open the agent server's page ↗
        </a>
      </p>
      <p className="hint">
        Its "Sign out" button clears the cookie and reconnects: the server refuses the socket with
        4001, and the page says so. From this page the same cookie never goes along (see the
        cross-domain panel).
      </p>
    </section>
  );
}

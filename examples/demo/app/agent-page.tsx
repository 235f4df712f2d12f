/**
 * The agent server's own page, served from the agent server's origin. It uses the
 * "same origin" pattern: an HTTP-only session cookie that the browser sends with the
 * WebSocket handshake, so `useAgent` needs no `host` and no token.
 */
import { useAgent } from "outpost/react";
import { StrictMode, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import type { RoomState } from "../server/room.js";
import { ROOM } from "./api.js";
import { describeClose, RoomView } from "./RoomView.js";
import "./styles.css";

function ChatComponent({ onRefused }: { onRefused: (why: string) => void }) {
  const agent = useAgent<RoomState>({
    agent: "room",
    name: ROOM,
    // Without a session there is nothing to retry with: stop and offer to sign in.
    onClose: (event) => {
      if (event.code === 4001)
        onRefused(`closed 4001 (${event.reason}): ${describeClose(4001, "cookie")}`);
    },
  });
  return (
    <RoomView
      id="cookie"
      title="Same-origin cookie session"
      agent={agent}
      credentials="cookie"
      intro={
        <>
          This page comes from the agent server itself. The socket carries no token: the browser
          sends the HTTP-only <code>outpost_session</code> cookie with the handshake, and the server
          accepts it only from the origins on its allowlist.
        </>
      }
    />
  );
}

function AgentPage() {
  const [user, setUser] = useState<string | null | undefined>(undefined);
  const [refused, setRefused] = useState<string | null>(null);
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    fetch("/session/me").then(
      async (res) => setUser(res.ok ? ((await res.json()) as { id: string }).id : null),
      () => setUser(null),
    );
  }, []);

  const signOut = async () => {
    await fetch("/session/logout", { method: "POST" });
    // Connect again without the cookie, to show what the server says to that.
    setRefused(null);
    setAttempt((n) => n + 1);
  };

  return (
    <main>
      <header className="top">
        <h1>Outpost agent server</h1>
        <p>
          Served from <code data-testid="page-origin">{window.location.origin}</code>, the same
          origin as the agents.
        </p>
        {user && (
          <p className="who">
            Signed in as <b data-testid="signed-in-as">{user}</b> (cookie session){" "}
            <button type="button" data-testid="sign-out" onClick={signOut}>
              Sign out
            </button>
          </p>
        )}
      </header>
      {user === undefined ? (
        <p>Checking your session…</p>
      ) : refused !== null || user === null ? (
        <section className="panel single" data-testid="panel-cookie">
          {refused && (
            <p className="refused" data-testid="refused">
              {refused}
            </p>
          )}
          <p>No session here yet.</p>
          <a data-testid="sign-in" href="/session/start">
            Sign in through the app
          </a>
        </section>
      ) : (
        <div className="single">
          <ChatComponent
            key={attempt}
            onRefused={(why) => {
              setRefused(why);
              setUser(null);
            }}
          />
        </div>
      )}
    </main>
  );
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <AgentPage />
  </StrictMode>,
);

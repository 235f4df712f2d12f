import { type FormEvent, useState } from "react";
import { AGENT_HOST, login, logout, type User } from "./api.js";
import { AsyncTokenPanel } from "./panels/AsyncTokenPanel.js";
import { ChatPanel } from "./panels/ChatPanel.js";
import { CookieSessionPanel } from "./panels/CookieSessionPanel.js";
import { AsyncCrossDomainAuth } from "./panels/CrossDomainPanel.js";
import { JwtRefreshPanel } from "./panels/JwtRefreshPanel.js";
import { StaticTokenPanel } from "./panels/StaticTokenPanel.js";
import { loadSession } from "./session.js";

/** What the page knows after sign-in: the user and a token for the static panel. */
export interface Session {
  user: User;
  token: string;
}

/** The demo page: sign in, then one panel per authentication pattern, all in one room. */
export function App({ initial }: { initial: Session | null }) {
  const [session, setSession] = useState(initial);
  return (
    <main>
      <header className="top">
        <h1>Outpost demo</h1>
        <p>
          This page comes from <code data-testid="app-origin">{window.location.origin}</code>; its
          agents live on <code>{new URL(AGENT_HOST).origin}</code>, another origin. Every panel
          joins the same chat room: open a second tab to watch it sync.
        </p>
        {session && (
          <p className="who">
            Signed in as <b data-testid="signed-in-as">{session.user.name}</b>{" "}
            <button
              type="button"
              onClick={() => {
                localStorage.removeItem("jwt");
                logout().then(() => setSession(null));
              }}
            >
              Sign out
            </button>
          </p>
        )}
      </header>
      {session ? (
        <div className="grid">
          <StaticTokenPanel token={session.token} userId={session.user.id} />
          <AsyncTokenPanel />
          <JwtRefreshPanel />
          <AsyncCrossDomainAuth />
          <CookieSessionPanel />
          <ChatPanel user={session.user.id} />
        </div>
      ) : (
        <SignIn onSignedIn={setSession} />
      )}
    </main>
  );
}

function SignIn({ onSignedIn }: { onSignedIn: (session: Session) => void }) {
  const [name, setName] = useState("");
  const [error, setError] = useState<string | null>(null);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    try {
      await login(name);
      // The agent server's page may have sent the user here to sign in first.
      const next = new URLSearchParams(window.location.search).get("next");
      if (next?.startsWith(`${window.location.origin}/authorize?`)) {
        window.location.assign(next);
        return;
      }
      const session = await loadSession();
      if (session) onSignedIn(session);
    } catch (reason) {
      setError(reason instanceof Error ? reason.message : String(reason));
    }
  };
  return (
    <form className="signin" onSubmit={submit}>
      <h2>Sign in to the app</h2>
      <p>
        The app is the identity provider: it signs EdDSA tokens for the agent server and publishes
        its public keys at <code>/.well-known/jwks.json</code>. Any name will do.
      </p>
      <input
        data-testid="user"
        value={name}
        onChange={(event) => setName(event.target.value)}
        placeholder="Your name"
      />
      <button type="submit" data-testid="sign-in">
        Sign in
      </button>
      {error && <p className="error">{error}</p>}
    </form>
  );
}

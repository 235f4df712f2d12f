import { useAgent } from "outpost/react";
import { useCallback, useState } from "react";
import type { RoomState } from "../../server/room.js";
import { AGENT_HOST, getAuthToken, getCurrentUser, ROOM } from "../api.js";
import { describeClose, type RoomAgent, RoomView } from "../RoomView.js";

/** "Cross-domain authentication": `host` names the agent server, credentials go in the query. */
export function AsyncCrossDomainAuth() {
  const asyncQuery = useCallback(async () => {
    const [token, user] = await Promise.all([getAuthToken(), getCurrentUser()]);
    return {
      token,
      userId: user.id,
      timestamp: Date.now().toString(),
    };
  }, []);

  const agent = useAgent<RoomState>({
    agent: "room",
    name: ROOM,
    host: AGENT_HOST,
    query: asyncQuery,
  });

  return <CrossDomainView agent={agent} />;
}

/**
 * Tries to open the room with no token at all, the way a same-origin page would rely on its
 * cookies. Across origins no cookie goes along, so the server refuses it with 4001.
 */
function CookieOnlyAttempt({ onDone }: { onDone: (code: number, reason: string) => void }) {
  useAgent<RoomState>({
    agent: "room",
    name: ROOM,
    host: AGENT_HOST,
    onClose: (event) => onDone(event.code, event.reason),
  });
  return <p>Connecting without a token…</p>;
}

/** The room, plus what makes this connection cross-domain and what a cookie cannot do. */
function CrossDomainView({ agent }: { agent: RoomAgent }) {
  const [trying, setTrying] = useState(false);
  const [result, setResult] = useState<string | null>(null);
  const pageOrigin = window.location.origin;
  const agentOrigin = new URL(AGENT_HOST).origin;

  return (
    <RoomView
      id="cross"
      title="Cross-domain host"
      agent={agent}
      credentials="query"
      intro={
        <>
          <code>host: AGENT_HOST</code> sends the socket to another origin. Cookies do not help
          there, so the token travels in the query; the server also checks the <code>Origin</code>{" "}
          header against its allowlist.
        </>
      }
    >
      <dl className="facts">
        <dt>This page</dt>
        <dd data-testid="page-origin">{pageOrigin}</dd>
        <dt>Agent server</dt>
        <dd data-testid="agent-origin">{agentOrigin}</dd>
        <dt>Cross-origin?</dt>
        <dd data-testid="cross-origin">{pageOrigin !== agentOrigin ? "yes" : "no"}</dd>
      </dl>
      {trying ? (
        <CookieOnlyAttempt
          onDone={(code, reason) => {
            setTrying(false);
            setResult(`closed ${code} (${reason}): ${describeClose(code, "static")}`);
          }}
        />
      ) : (
        <button
          type="button"
          data-testid="no-token"
          onClick={() => {
            setResult(null);
            setTrying(true);
          }}
        >
          Connect without a token (cookies only)
        </button>
      )}
      {result && (
        <p className="refused" data-testid="no-token-result">
          {result}
        </p>
      )}
    </RoomView>
  );
}

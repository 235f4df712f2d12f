import { useAgent } from "outpost/react";
import { useCallback, useEffect, useRef, useState } from "react";
import type { RoomState, WhoAmI } from "../../server/room.js";
import { AGENT_HOST, getAuthToken, REFRESH_TTL, ROOM } from "../api.js";
import { RoomView } from "../RoomView.js";

/**
 * Share of a token's life that must be left for the stored token to be reused. Outpost's
 * client asks for a replacement when 80% of the life is gone, and then wants a new token.
 */
const REUSE_WHILE_LEFT = 0.5;

const validateToken = async (token: string) => {
  // The identity provider checks the signature and tells us how long the token has left.
  const res = await fetch("/api/users/me", {
    headers: {
      Authorization: `Bearer ${token}`,
    },
  });
  if (!res.ok) return false;
  const { exp, iat } = (await res.json()) as { exp: number; iat: number };
  return exp - Date.now() / 1000 > (exp - iat) * REUSE_WHILE_LEFT;
};

const refreshToken = async () => {
  // The demo's identity provider still has the user's sign-in cookie: ask it for a new
  // short-lived token.
  return getAuthToken("refresh");
};

function useJWTAgent(agentName: string, onToken: (source: "fetched" | "stored") => void) {
  const asyncQuery = useCallback(async () => {
    let token = localStorage.getItem("jwt");
    // If no token OR the token is no longer valid
    // request a fresh token
    if (!token || !(await validateToken(token))) {
      token = await refreshToken();
      localStorage.setItem("jwt", token);
      onToken("fetched");
    } else {
      // localStorage is shared by every tab: another tab may have fetched this one.
      onToken("stored");
    }
    return {
      token,
    };
  }, [onToken]);

  const agent = useAgent<RoomState>({
    agent: agentName,
    name: ROOM,
    host: AGENT_HOST,
    query: asyncQuery,
    queryDeps: [], // Run on mount
  });

  return agent;
}

/**
 * "JWT refresh pattern" with 30-second tokens (configurable). Outpost's client asks the query for a new
 * token shortly before the current one expires and hands it to the server over the open
 * socket (`outpost_auth`), so the connection stays: same connection id, later expiry.
 */
export function JwtRefreshPanel() {
  const [tokens, setTokens] = useState({ fetched: 0, stored: 0 });
  const onToken = useCallback(
    (source: "fetched" | "stored") => setTokens((t) => ({ ...t, [source]: t[source] + 1 })),
    [],
  );
  const agent = useJWTAgent("room", onToken);
  const [server, setServer] = useState<WhoAmI | null>(null);
  const [now, setNow] = useState(Date.now());
  // Renewals as the server saw them: a later expiry on the same connection id.
  const [renewals, setRenewals] = useState(0);
  const seen = useRef<WhoAmI | null>(null);

  // Ask the agent how it sees this socket, once a second: its id and current expiry.
  useEffect(() => {
    const timer = setInterval(() => {
      setNow(Date.now());
      agent.call<WhoAmI>("whoami").then(
        (answer) => {
          const last = seen.current;
          if (last !== null && last.connectionId !== answer.connectionId) setRenewals(0);
          else if (last?.exp != null && answer.exp != null && answer.exp > last.exp) {
            setRenewals((n) => n + 1);
          }
          seen.current = answer;
          setServer(answer);
        },
        () => {},
      );
    }, 1000);
    return () => clearInterval(timer);
  }, [agent]);

  const left = server?.exp == null ? null : Math.max(0, Math.round(server.exp - now / 1000));
  return (
    <RoomView
      id="refresh"
      title={`JWT refresh (${REFRESH_TTL}-second tokens)`}
      agent={agent}
      credentials="query"
      intro={
        <>
          Tokens live {REFRESH_TTL} seconds. Before one expires the client runs the query again and
          sends the new token over the open socket: the connection id stays the same.
        </>
      }
    >
      <dl className="facts">
        <dt>Tokens this tab fetched</dt>
        <dd data-testid="tokens-fetched">{tokens.fetched}</dd>
        <dt>Stored tokens reused (shared by tabs)</dt>
        <dd data-testid="tokens-reused">{tokens.stored}</dd>
        <dt>Renewals on this socket (server)</dt>
        <dd data-testid="renewals">{renewals}</dd>
        <dt>Connection id (server)</dt>
        <dd data-testid="connection-id">{server?.connectionId ?? "…"}</dd>
        <dt>Token expires in</dt>
        <dd data-testid="expires-in" data-exp={server?.exp ?? ""}>
          {left === null ? "…" : `${left} s`}
        </dd>
      </dl>
      <button
        type="button"
        data-testid="forget"
        onClick={() => {
          localStorage.removeItem("jwt");
        }}
      >
        Forget the stored token
      </button>
    </RoomView>
  );
}

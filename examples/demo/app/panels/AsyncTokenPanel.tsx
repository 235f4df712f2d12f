import { useAgent } from "outpost/react";
import { Suspense, useCallback, useState } from "react";
import type { RoomState } from "../../server/room.js";
import { AGENT_HOST, getAuthToken, getCurrentUser, ROOM, tamper } from "../api.js";
import { RoomView } from "../RoomView.js";

/** Set by the "tampered token" button: the next query answer carries a broken signature. */
let tamperNext = false;

function ChatComponent() {
  const [attempt, setAttempt] = useState(0);

  const asyncQuery = useCallback(async () => {
    const [token, user] = await Promise.all([getAuthToken(), getCurrentUser()]);
    const sent = tamperNext ? tamper(token) : token;
    tamperNext = false;
    return {
      token: sent,
      userId: user.id,
      timestamp: Date.now().toString(),
    };
  }, []);

  const agent = useAgent<RoomState>({
    agent: "room",
    name: ROOM,
    host: AGENT_HOST,
    query: asyncQuery,
    queryDeps: [attempt],
  });

  return (
    <RoomView
      id="async"
      title="Async token with Suspense"
      agent={agent}
      credentials="query"
      intro={
        <>
          <code>query: asyncQuery</code> fetches a fresh token right before connecting; the panel
          suspends until it has one. A refused token (4001) makes the client run the query again and
          reconnect.
        </>
      }
    >
      <button
        type="button"
        data-testid="tamper"
        onClick={() => {
          tamperNext = true;
          setAttempt((n) => n + 1);
        }}
      >
        Reconnect with a tampered token
      </button>
    </RoomView>
  );
}

/** "Async authentication": build the query right before connecting, under Suspense. */
export function AsyncTokenPanel() {
  return (
    <Suspense fallback={<div className="panel">Authenticating...</div>}>
      <ChatComponent />
    </Suspense>
  );
}

import { useAgent } from "outpost/react";
import { useState } from "react";
import type { RoomState } from "../../server/room.js";
import { AGENT_HOST, ROOM, tamper } from "../api.js";
import { RoomView } from "../RoomView.js";

/**
 * "Static authentication": the token is a plain value the page already has (here: the one
 * it got when the user signed in), passed in the query.
 */
export function StaticTokenPanel({ token, userId }: { token: string; userId: string }) {
  const [tampered, setTampered] = useState(false);

  const agent = useAgent<RoomState>({
    agent: "room",
    name: ROOM,
    host: AGENT_HOST,
    query: {
      token: tampered ? tamper(token) : token,
      userId,
    },
  });

  return (
    <RoomView
      id="static"
      title="Static token"
      agent={agent}
      credentials="static"
      intro={
        <>
          <code>query: {"{ token, userId }"}</code> with a token the page got at sign-in. A static
          token cannot be renewed: refused (4001), the client tries it a few more times and then
          gives up with <code>connectionError</code>.
        </>
      }
    >
      {tampered ? (
        <button type="button" data-testid="untamper" onClick={() => setTampered(false)}>
          Back to the good token
        </button>
      ) : (
        <button type="button" data-testid="tamper" onClick={() => setTampered(true)}>
          Connect with a tampered token
        </button>
      )}
    </RoomView>
  );
}

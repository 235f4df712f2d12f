import type { UseAgentResult } from "outpost/react";
import { type ReactNode, useEffect, useState } from "react";
import type { ChatMessage, RoomState } from "../server/room.js";
import { Conversation } from "./Conversation.js";

/** What `useAgent()` returns for the room. */
export type RoomAgent = UseAgentResult<RoomState>;

/** One line of a panel's connection log. */
export interface ConnectionEvent {
  at: number;
  kind: "open" | "closed";
  code?: number;
  reason?: string;
}

/**
 * Open/close events of an agent connection, newest last, read from `status`: `useAgent`
 * re-renders on every change, and a close that the client will retry leaves its code in
 * `status.lastClose` while it waits.
 */
export function useConnectionLog(agent: RoomAgent) {
  const [events, setEvents] = useState<ConnectionEvent[]>([]);
  const { status } = agent;
  useEffect(() => {
    const add = (event: ConnectionEvent) => setEvents((list) => [...list, event].slice(-6));
    if (status.state === "open") add({ at: Date.now(), kind: "open" });
    else if (status.state === "connecting" && status.lastClose) {
      add({ at: Date.now(), kind: "closed", ...status.lastClose });
    }
  }, [status]);
  const opens = events.filter((event) => event.kind === "open").length;
  return { events, opens };
}

/**
 * Where a panel's credentials come from, which decides what a 4001 leads to: a `query`
 * function is run again for fresh credentials; a static query can only be sent again.
 */
export type Credentials = "query" | "static" | "cookie";

/** What a close code means to the user, in the words of the design's close-code table. */
export function describeClose(code: number | undefined, credentials: Credentials): string {
  switch (code) {
    case 4001:
      if (credentials === "static") {
        return "Unauthorized: a static token cannot be renewed; the client sends it again a few times, then gives up";
      }
      if (credentials === "cookie") {
        return "Unauthorized: the session cookie is missing or expired; sign in again";
      }
      return "Unauthorized: the client runs its query for fresh credentials and reconnects";
    case 4003:
      return "Forbidden: not allowed here; the client stops";
    case 4008:
      return "Too many failed attempts: the client waits";
    case 4009:
      return "Session revoked; the client stops";
    case 1001:
      return "Server going away; reconnecting";
    default:
      return "Connection lost; reconnecting";
  }
}

/**
 * The shared chat room as one panel shows it: connection status and log, the last lines
 * of the room, and a box to post into it. `children` holds what is special to the pattern.
 */
export function RoomView(props: {
  id: string;
  title: string;
  agent: RoomAgent;
  /** Where this panel's credentials come from (what a 4001 leads to). */
  credentials: Credentials;
  intro: ReactNode;
  children?: ReactNode;
}) {
  const { agent, id, credentials } = props;
  const { events, opens } = useConnectionLog(agent);
  const { status, connectionError } = agent;
  const [error, setError] = useState<string | null>(null);
  const messages: ChatMessage[] = agent.state?.messages.slice(-5) ?? [];
  // A failed post belongs to the connection it failed on: a new connection clears it.
  useEffect(() => {
    if (status.state === "open") setError(null);
  }, [status.state]);

  const send = (text: string) => {
    agent.call("post", [text.trim(), id]).then(
      () => setError(null),
      (reason: unknown) => setError(reason instanceof Error ? reason.message : String(reason)),
    );
  };

  const label =
    status.state === "open"
      ? "open"
      : status.state === "closed"
        ? "closed"
        : status.lastClose
          ? `closed ${status.lastClose.code}, retrying`
          : "connecting";
  return (
    <section className="panel" data-testid={`panel-${id}`}>
      <header>
        <h2>{props.title}</h2>
        <span className={`status status-${status.state}`} data-testid="status">
          {label}
        </span>
      </header>
      <div className="intro">{props.intro}</div>
      <Conversation
        testId="messages"
        lines={messages.map((message) => ({
          key: message.id,
          who: message.user,
          body: (
            <>
              {message.text} <small>via {message.via}</small>
            </>
          ),
        }))}
        empty={
          agent.state === undefined
            ? {
                testId: "no-state",
                text:
                  status.state === "open"
                    ? "Loading…"
                    : "Not connected: the room's messages show once the server accepts this connection.",
              }
            : { text: "No messages yet: say hello." }
        }
        onSend={send}
        placeholder="Message the room"
        inputTestId="input"
        maxLength={280}
      />
      {error && <p className="error">{error}</p>}
      {connectionError && (
        <p className="refused" data-testid="connection-error">
          Gave up ({connectionError.code}): {connectionError.message}
        </p>
      )}
      {props.children}
      <ol className="events" data-testid="events">
        {events.map((event) => (
          <li key={`${event.at}-${event.kind}`} data-kind={event.kind} data-code={event.code}>
            {new Date(event.at).toLocaleTimeString()}{" "}
            {event.kind === "open"
              ? "connected"
              : `closed ${event.code}${event.reason ? ` (${event.reason})` : ""}: ${describeClose(event.code, credentials)}`}
          </li>
        ))}
      </ol>
      <p className="opens" data-testid="opens">
        Socket opened {opens} time{opens === 1 ? "" : "s"}
      </p>
    </section>
  );
}

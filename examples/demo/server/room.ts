import { Agent, type Connection, callable, getCurrentAgent } from "outpost";

/** One chat line. `user` comes from the verified token, never from what the client says. */
export interface ChatMessage {
  id: number;
  user: string;
  text: string;
  /** Which panel (pattern) sent it, so the page can show where a line came from. */
  via: string;
  at: number;
}

export interface RoomState {
  messages: ChatMessage[];
  /** Next message id; kept in state so ids survive a restart of the agent server. */
  nextId: number;
}

/** What `whoami()` answers: the server's view of the calling connection. */
export interface WhoAmI {
  connectionId: string;
  user: string;
  /** Expiry of the credentials the connection holds now, in seconds since the epoch. */
  exp: number | null;
}

const KEEP_MESSAGES = 30;
const MAX_TEXT = 280;

/**
 * The demo's shared chat room. Every panel of the page, in every tab, connects to the same
 * instance, so a line posted anywhere shows up everywhere. Its state lives in the agent's
 * own SQLite database, so the room survives a restart.
 */
export class Room extends Agent<unknown, RoomState> {
  override initialState: RoomState = { messages: [], nextId: 1 };

  @callable()
  post(text: string, via = "page"): ChatMessage {
    const user = callerOf(getCurrentAgent().connection);
    const clean = String(text).trim().slice(0, MAX_TEXT);
    if (clean === "") throw new Error("say something");
    const message: ChatMessage = {
      id: this.state.nextId,
      user,
      text: clean,
      via: String(via).slice(0, 40),
      at: Date.now(),
    };
    this.setState({
      messages: [...this.state.messages, message].slice(-KEEP_MESSAGES),
      nextId: message.id + 1,
    });
    return message;
  }

  /**
   * Lets a panel prove that a token renewal happened on the same socket: the connection id
   * stays, the expiry moves.
   */
  @callable()
  whoami(): WhoAmI {
    const { connection } = getCurrentAgent();
    return {
      connectionId: connection?.id ?? "",
      user: callerOf(connection),
      exp: typeof connection?.auth?.exp === "number" ? connection.auth.exp : null,
    };
  }

  // Messages are written through `post()` only, so nobody can rewrite the history with a
  // raw state frame.
  override validateStateChange(_next: RoomState, source: Connection | "server"): void {
    if (source !== "server") throw new Error("the room is changed through post()");
  }
}

function callerOf(connection: Connection | undefined): string {
  return connection?.auth?.sub ?? "anonymous";
}

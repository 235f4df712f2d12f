import { type FormEvent, type Key, type ReactNode, useState } from "react";

/** One line of a conversation: who said it, and what. */
export interface ConversationLine {
  key: Key;
  who: ReactNode;
  body: ReactNode;
  /** Set as `data-role` on the line (the chat's `user` or `assistant`). */
  role?: string;
}

/**
 * A list of messages with a box to write the next one: the room panels and the AI chat
 * show their conversations alike, so it is drawn in one place. `onSend` gets the text as
 * typed, never blank; the box is cleared as it is sent.
 */
export function Conversation(props: {
  /** `data-testid` of the list. */
  testId: string;
  lines: ConversationLine[];
  /** Shown instead of the lines while there are none. */
  empty: { text: ReactNode; testId?: string };
  onSend: (text: string) => void;
  placeholder: string;
  /** `data-testid` of the text box and of the send button. */
  inputTestId: string;
  sendTestId?: string;
  maxLength?: number;
  /** The send button is disabled (e.g. while an answer streams). */
  busy?: boolean;
  /** More buttons, after the send button. */
  actions?: ReactNode;
}) {
  const [text, setText] = useState("");
  const send = (event: FormEvent) => {
    event.preventDefault();
    if (text.trim() === "") return;
    setText("");
    props.onSend(text);
  };
  return (
    <>
      <ul className="messages" data-testid={props.testId}>
        {props.lines.length === 0 && (
          <li className="empty" data-testid={props.empty.testId}>
            {props.empty.text}
          </li>
        )}
        {props.lines.map((line) => (
          <li key={line.key} data-role={line.role}>
            <b>{line.who}</b> {line.body}
          </li>
        ))}
      </ul>
      <form onSubmit={send} className="send">
        <input
          data-testid={props.inputTestId}
          value={text}
          onChange={(event) => setText(event.target.value)}
          placeholder={props.placeholder}
          maxLength={props.maxLength}
        />
        <button type="submit" data-testid={props.sendTestId} disabled={props.busy}>
          Send
        </button>
        {props.actions}
      </form>
    </>
  );
}

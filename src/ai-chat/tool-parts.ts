import type { UIMessage } from "ai";

type Part = UIMessage["parts"][number];
type ToolPart = Part & { toolCallId: string; state: string };

const AWAITING_OUTPUT = new Set([
  "input-streaming",
  "input-available",
  "approval-requested",
  "approval-responded",
]);

function isToolPart(part: Part): part is ToolPart {
  return (
    (part.type.startsWith("tool-") || part.type === "dynamic-tool") &&
    typeof (part as { toolCallId?: unknown }).toolCallId === "string"
  );
}

/** What changed: the message with the updated part, and its index. */
export interface ToolPartUpdate {
  index: number;
  message: UIMessage;
}

/**
 * Apply `change` to the tool part `toolCallId` if it is in one of `states`; a new message
 * object is returned (the old one is left untouched for anyone still holding it).
 */
function updateToolPart(
  messages: readonly UIMessage[],
  toolCallId: string,
  states: ReadonlySet<string>,
  change: (part: ToolPart) => Part,
): ToolPartUpdate | undefined {
  for (let index = messages.length - 1; index >= 0; index--) {
    const message = messages[index]!;
    const at = message.parts.findIndex(
      (part) => isToolPart(part) && part.toolCallId === toolCallId,
    );
    if (at === -1) continue;
    const part = message.parts[at] as ToolPart;
    if (!states.has(part.state)) return undefined;
    const parts = [...message.parts];
    parts[at] = change(part);
    return { index, message: { ...message, parts } };
  }
  return undefined;
}

/** A client-side tool's result: the call's part gets its output (or its error). */
export function applyToolResult(
  messages: readonly UIMessage[],
  result: {
    toolCallId: string;
    output: unknown;
    state: "output-available" | "output-error" | undefined;
    errorText: string | undefined;
  },
): ToolPartUpdate | undefined {
  return updateToolPart(messages, result.toolCallId, AWAITING_OUTPUT, (part) =>
    result.state === "output-error"
      ? ({ ...part, state: "output-error", errorText: result.errorText ?? "Tool failed" } as Part)
      : ({ ...part, state: "output-available", output: result.output } as Part),
  );
}

/**
 * The user's answer to a tool that needs approval. Approved: `approval-responded`, so the
 * model's next step runs the tool. Denied: `output-denied`, so the model is told and
 * providers that need a result for every call get one.
 */
export function applyToolApproval(
  messages: readonly UIMessage[],
  toolCallId: string,
  approved: boolean,
): ToolPartUpdate | undefined {
  return updateToolPart(messages, toolCallId, new Set(["approval-requested"]), (part) => {
    const approval = { ...((part as { approval?: object }).approval ?? {}), approved };
    return {
      ...part,
      state: approved ? "approval-responded" : "output-denied",
      approval,
    } as Part;
  });
}

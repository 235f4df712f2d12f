/**
 * The README's tutorial as steps a test can run. A code block is a step when the line before
 * it is a marker comment, invisible on the rendered page:
 *
 *   <!-- tutorial: run -->            shell commands that finish
 *   <!-- tutorial: serve -->          shell commands that start the server and keep running
 *   <!-- tutorial: client -->         shell commands whose output the reader looks at
 *   <!-- tutorial: file agents.ts --> a file the reader writes
 */
export type TutorialStep =
  | { readonly kind: "run" | "serve" | "client"; readonly code: string }
  | { readonly kind: "file"; readonly name: string; readonly code: string };

const STEP = /<!-- tutorial: (run|serve|client|file ([^\s]+)) -->\n```[a-z]*\n([\s\S]*?)```/g;

/** The marked code blocks of `markdown`, in order. */
export function tutorialSteps(markdown: string): TutorialStep[] {
  return [...markdown.matchAll(STEP)].map(([, kind, name, code]) =>
    name === undefined
      ? { kind: kind as "run" | "serve" | "client", code: code! }
      : { kind: "file", name, code: code! },
  );
}

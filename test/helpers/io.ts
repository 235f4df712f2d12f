import type { CommandIo } from "../../src/cli/io.js";

/** A `CommandIo` that keeps what a CLI command wrote, for assertions. */
export function bufferIo(): { io: CommandIo; stdout: () => string; stderr: () => string } {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: { stdout: (s: string) => void out.push(s), stderr: (s: string) => void err.push(s) },
    stdout: () => out.join(""),
    stderr: () => err.join(""),
  };
}

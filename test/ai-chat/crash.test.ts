import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { tempDir } from "../helpers/server.js";
import { connect, type Frame } from "../helpers/ws-client.js";
import {
  responseFrames,
  SLOW_WORDS,
  sendChat,
  streamedText,
  textOf,
  userMessage,
} from "./fixtures.js";

const SCRIPT = fileURLToPath(new URL("./chat-server-child.ts", import.meta.url));
const children: ChildProcess[] = [];

afterEach(() => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
});

function start(dataDir: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ["--import", "tsx", SCRIPT, dataDir], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (data: Buffer) => {
      out += data.toString();
      if (out.includes("\n")) resolve({ child, port: (JSON.parse(out) as { port: number }).port });
    });
    child.once("exit", (code, signal) => reject(new Error(`exited ${signal ?? code}`)));
  });
}

describe("AIChatAgent and a killed process", () => {
  it("keeps the partial answer of a process killed with SIGKILL mid-answer, short of at most one unwritten batch", async () => {
    const data = tempDir();
    try {
      const first = await start(data.dir);
      const client = await connect(`ws://127.0.0.1:${first.port}/agents/test-chat/killed`);
      sendChat(client, "req-k", [userMessage("u1", "slow please")]);
      // A dozen chunks at 120 ms: well past the first 100 ms batch.
      await client.waitForCount(
        (m) => (m as Frame).type === "cf_agent_use_chat_response",
        12,
        "a dozen chunks",
      );
      const exited = new Promise((resolve) => first.child.once("exit", resolve));
      first.child.kill("SIGKILL");
      await exited;
      const seen = streamedText(responseFrames(client, "req-k"));
      await client.closed;

      const second = await start(data.dir);
      const response = await fetch(
        `http://127.0.0.1:${second.port}/agents/test-chat/killed/get-messages`,
      );
      const history = (await response.json()) as never[];
      expect(history.length).toBe(2);
      const kept = textOf(history[1]);
      expect(kept.length).toBeGreaterThan(0);
      expect(seen.startsWith(kept)).toBe(true);
      // Lost: only what was sent in the last 100 ms before the kill (a word, on a busy machine
      // a few).
      expect(seen.length - kept.length).toBeLessThanOrEqual(SLOW_WORDS[10]!.length * 3);
    } finally {
      data.remove();
    }
  });
});

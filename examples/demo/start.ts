/**
 * `npm start`: the Outpost demo, two servers on two origins from one command.
 * See docs/demo.md for what to try.
 */
import { type DemoConfig, HELP, readConfig } from "./server/config.js";
import { PortInUseError, startDemo } from "./server/demo.js";

async function main(): Promise<void> {
  let config: DemoConfig | "help";
  try {
    config = readConfig(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${HELP}`);
    process.exit(2);
  }
  if (config === "help") {
    process.stdout.write(HELP);
    return;
  }
  if (!config.skipBuild) process.stdout.write("Building the app with Vite…\n");
  const demo = await startDemo(config);
  process.stdout.write(
    [
      "",
      "Outpost demo is running:",
      `  App (identity provider): ${demo.appUrl}`,
      `  Agent server:            ${demo.agentUrl}`,
      "",
      "Open the app, sign in, and open it in a second tab to watch the room sync.",
      "Press Ctrl-C to stop both servers.",
      "",
    ].join("\n"),
  );
  const shutdown = (signal: NodeJS.Signals) => {
    process.stdout.write(`\n${signal}: stopping both servers…\n`);
    // A second Ctrl-C while closing means "now".
    process.once(signal, () => process.exit(1));
    demo.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGINT", shutdown);
  process.once("SIGTERM", shutdown);
}

main().catch((error) => {
  // A taken port is the user's to fix: one line with the flag, no stack.
  const detail =
    error instanceof PortInUseError ? error.message : ((error as Error).stack ?? error);
  process.stderr.write(`the demo could not start: ${detail}\n`);
  process.exit(1);
});

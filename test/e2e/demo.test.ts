/**
 * The demo in a real browser: Debian's Chromium driven by playwright-core (never a
 * downloaded browser; `scripts/install-browser.sh` installs it). Starts `examples/demo`
 * the way `npm start` does, on free ports, and proves the cross-domain story end to end.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type Browser,
  type BrowserContext,
  chromium,
  type Locator,
  type Page,
} from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const CHROMIUM = "/usr/bin/chromium";
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
/**
 * Test output goes outside the tracked tree. `scripts/refresh-demo-screenshot.sh` points
 * this at docs/demo.png, on the documented ports, to refresh the README picture on purpose.
 */
const SCREENSHOT = process.env.OUTPOST_DEMO_SCREENSHOT ?? join(ROOT, "test-results", "demo.png");
const DOCS_SCREENSHOT = join(ROOT, "docs", "demo.png");
/** Free ports unless the refresh script asks for the documented ones. */
const APP_PORT = process.env.OUTPOST_DEMO_APP_PORT ?? "0";
const AGENT_PORT = process.env.OUTPOST_DEMO_AGENT_PORT ?? "0";
/** Seconds the refresh panel's tokens live: short, so renewals happen within the test. */
const REFRESH_TTL = 6;
const hasChromium = existsSync(CHROMIUM);

if (!hasChromium && process.env.CI) {
  throw new Error(`${CHROMIUM} is missing: CI must run scripts/install-browser.sh first`);
}

interface RunningDemo {
  process: ChildProcess;
  appUrl: string;
  agentUrl: string;
  output: string[];
}

let demo: RunningDemo | undefined;
let browser: Browser | undefined;
let dataDir: string | undefined;
/** Every WebSocket URL the pages opened. */
const sockets: string[] = [];
/** What happened on ada's page, counted from the wire: accepted in-band renewals, token fetches. */
const adaWire = { renewals: 0, refreshTokenFetches: 0 };

// Generous per-test time: a busy CI machine runs the other suites alongside.
describe.skipIf(!hasChromium)("demo app in Chromium", { timeout: 60_000 }, () => {
  let ada: Page;
  let adaContext: BrowserContext;
  let grace: Page;

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "outpost-demo-"));
    demo = await startDemo(dataDir);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    // Two users in two browser profiles, so the room really is shared between people.
    adaContext = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
    const graceContext = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
    ada = await adaContext.newPage();
    grace = await graceContext.newPage();
    for (const page of [ada, grace]) page.on("websocket", (ws) => sockets.push(ws.url()));
    // Only the refresh panel's tokens are short enough to be renewed during the test.
    ada.on("websocket", (ws) =>
      ws.on("framereceived", ({ payload }) => {
        if (
          typeof payload === "string" &&
          /"type":"outpost_auth_result".*"ok":true/.test(payload)
        ) {
          adaWire.renewals++;
        }
      }),
    );
    ada.on("request", (request) => {
      if (/\/api\/token\?.*kind=refresh/.test(request.url())) adaWire.refreshTokenFetches++;
    });
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await stopDemo(demo);
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }, 30_000);

  it("loads without console errors or failed requests, and a refused sign-in shows the server's reason", async () => {
    const context = await browser!.newContext({ viewport: { width: 1440, height: 1000 } });
    try {
      const page = await context.newPage();
      const problems: string[] = [];
      page.on("console", (message) => {
        if (message.type() === "error") problems.push(`console: ${message.text()}`);
      });
      page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
      page.on("response", (response) => {
        if (response.status() >= 400) problems.push(`${response.status()} ${response.url()}`);
      });
      await page.goto(demo!.appUrl);
      await page.getByTestId("user").waitFor();
      await page.waitForLoadState("networkidle");
      expect(problems).toEqual([]);

      await page.getByTestId("user").fill("not a valid name!");
      await page.getByTestId("sign-in").click();
      await page.locator("p.error").waitFor();
      expect(await page.locator("p.error").textContent()).toBe(
        "pick a name of letters, digits, . _ or -",
      );
    } finally {
      await context.close();
    }
  });

  it("signs in and shares live room state between two pages", async () => {
    await signIn(ada, "ada");
    await signIn(grace, "grace");
    for (const page of [ada, grace]) {
      for (const id of ["static", "async", "refresh", "cross"]) await waitOpen(panel(page, id));
    }

    await post(panel(grace, "static"), "hello from grace");
    await post(panel(ada, "async"), "hi grace, ada here");
    // Every panel of both pages shows both lines, with the user the server took from the token.
    for (const page of [ada, grace]) {
      for (const id of ["static", "async", "refresh", "cross"]) {
        const messages = panel(page, id).getByTestId("messages");
        await messages.getByText("hello from grace").waitFor();
        await messages.getByText("hi grace, ada here").waitFor();
      }
    }
    const line = panel(ada, "cross").getByTestId("messages").locator("li", {
      hasText: "hello from grace",
    });
    expect(await line.textContent()).toContain("grace");
  });

  it("runs the page and the agents on different origins", async () => {
    const pageOrigin = new URL(ada.url()).origin;
    const agentOrigin = new URL(demo!.agentUrl).origin;
    expect(pageOrigin).toBe(demo!.appUrl);
    expect(pageOrigin).not.toBe(agentOrigin);
    const cross = panel(ada, "cross");
    expect(await cross.getByTestId("page-origin").textContent()).toBe(pageOrigin);
    expect(await cross.getByTestId("agent-origin").textContent()).toBe(agentOrigin);
    expect(await cross.getByTestId("cross-origin").textContent()).toBe("yes");
    // What the browser really did: every socket went to the agent server's origin.
    const wsOrigin = agentOrigin.replace(/^http/, "ws");
    expect(sockets.length).toBeGreaterThan(0);
    for (const url of sockets) expect(url.startsWith(`${wsOrigin}/agents/room/lobby`)).toBe(true);
  });

  it("renews a short-lived token in-band and keeps the connection", async () => {
    const refresh = panel(ada, "refresh");
    const connectionId = await waitForValue(refresh.getByTestId("connection-id"));
    const firstExp = Number(await refresh.getByTestId("expires-in").getAttribute("data-exp"));
    expect(firstExp).toBeGreaterThan(0);

    // Two renewals, and past the first token's expiry, on the same socket.
    await ada.waitForFunction(
      ({ exp }) => {
        const panel = document.querySelector('[data-testid="panel-refresh"]');
        const renewals = Number(panel?.querySelector('[data-testid="renewals"]')?.textContent);
        return renewals >= 2 && Date.now() / 1000 > exp + 1;
      },
      { exp: firstExp },
      { timeout: REFRESH_TTL * 6 * 1000, polling: 250 },
    );
    await ada.waitForFunction(
      (exp) =>
        Number(
          document
            .querySelector('[data-testid="panel-refresh"] [data-testid="expires-in"]')
            ?.getAttribute("data-exp"),
        ) > exp,
      firstExp,
      { timeout: 5_000 },
    );
    expect(await refresh.getByTestId("connection-id").textContent()).toBe(connectionId);
    expect(await refresh.getByTestId("opens").textContent()).toBe("Socket opened 1 time");
    expect(await refresh.getByTestId("status").textContent()).toBe("open");

    // The counters match what crossed the wire: renewals the server accepted on this socket,
    // and tokens this tab fetched from the identity provider.
    const shown = async () => ({
      renewals: Number(await refresh.getByTestId("renewals").textContent()),
      refreshTokenFetches: Number(await refresh.getByTestId("tokens-fetched").textContent()),
    });
    await expect.poll(shown, { timeout: 10_000, interval: 200 }).toEqual({ ...adaWire });
    expect(adaWire.renewals).toBeGreaterThanOrEqual(2);
  });

  it("refuses a tampered token with 4001 and says so on the page", async () => {
    for (const id of ["static", "async"]) {
      const view = panel(ada, id);
      await view.getByTestId("tamper").click();
      const refusal = view.getByTestId("events").locator('li[data-code="4001"]');
      await refusal.first().waitFor();
      expect(await refusal.first().textContent()).toContain("token signature invalid");
      // Each panel says what its client really does next.
      expect(await refusal.first().textContent()).toContain(
        id === "static"
          ? "a static token cannot be renewed"
          : "the client runs its query for fresh credentials",
      );
      if (id === "static") {
        // Refused, the panel does not pretend the room is empty, and a failed post is
        // cleared once a connection is accepted again.
        await view.getByTestId("connection-error").waitFor({ timeout: 30_000 });
        expect(await view.getByTestId("no-state").textContent()).toContain("Not connected");
        await post(view, "sent while refused");
        await view.locator("p.error").waitFor();
      }
      // A static token cannot heal itself: the user goes back to the good one. The async
      // panel's client runs its query again on the 4001 and is back without help.
      if (id === "static") await view.getByTestId("untamper").click();
      await waitOpen(view);
      expect(await view.locator("p.error").count()).toBe(0);
    }
    const cross = panel(ada, "cross");
    await cross.getByTestId("no-token").click();
    const result = cross.getByTestId("no-token-result");
    await result.waitFor();
    expect(await result.textContent()).toContain("closed 4001 (token missing)");
  });

  it("saves a screenshot under test-results/ and leaves the tracked docs/demo.png as it was", async () => {
    const before = await readFile(DOCS_SCREENSHOT);
    await post(panel(ada, "refresh"), "renewed without reconnecting");
    await panel(ada, "static").getByText("renewed without reconnecting").waitFor();
    await mkdir(dirname(SCREENSHOT), { recursive: true });
    await ada.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(existsSync(SCREENSHOT)).toBe(true);
    if (SCREENSHOT !== DOCS_SCREENSHOT) {
      expect((await readFile(DOCS_SCREENSHOT)).equals(before)).toBe(true);
    }
  });

  it("serves a same-origin page on the agent server that uses a cookie session", async () => {
    const page = await adaContext.newPage();
    // Signs in through the app (already signed in as ada there) and lands back with a cookie.
    await page.goto(`${demo!.agentUrl}/session/start`);
    await page.waitForURL(`${demo!.agentUrl}/`);
    expect(new URL(page.url()).origin).toBe(new URL(demo!.agentUrl).origin);
    expect(await page.getByTestId("signed-in-as").textContent()).toBe("ada");
    const cookieRoom = panel(page, "cookie");
    await waitOpen(cookieRoom);
    const width = (await cookieRoom.boundingBox())?.width;
    await post(cookieRoom, "sent with a cookie");
    await panel(ada, "static").getByText("sent with a cookie").waitFor();

    await page.getByTestId("sign-out").click();
    const refused = page.getByTestId("refused");
    await refused.waitFor();
    expect(await refused.textContent()).toContain("closed 4001");
    expect(await refused.textContent()).toContain("sign in again");
    // Signed in or refused, the panel keeps its width.
    expect((await panel(page, "cookie").boundingBox())?.width).toBe(width);
    await page.close();
  });

  it("chats with the offline model: ask, watch it stream, reload mid-answer and see it resume, cancel, clear", async () => {
    const chat = panel(ada, "chat");
    await chat.getByTestId("chat-open").click();
    await chat
      .getByTestId("chat-status")
      .filter({ hasText: /^open$/ })
      .waitFor({ timeout: 15_000 });
    expect(await chat.getByTestId("chat-model").textContent()).toContain("offline demo model");

    await ask(chat, "hello there");
    const answer = chat.getByTestId("chat-assistant").last();
    await answer.filter({ hasText: "I am the offline demo model" }).waitFor();
    const early = (await answer.textContent()) ?? "";
    await expect
      .poll(async () => ((await answer.textContent()) ?? "").length)
      .toBeGreaterThan(early.length);
    expect(await answer.textContent()).not.toContain("watch it resume.");

    // Reload while the answer is still streaming: the page gets the rest, once.
    await ada.reload();
    const resumed = panel(ada, "chat").getByTestId("chat-assistant").last();
    await resumed.filter({ hasText: "watch it resume." }).waitFor({ timeout: 30_000 });
    const full = (await resumed.textContent()) ?? "";
    expect(full.split("I am the offline demo model").length).toBe(2);
    expect(full.endsWith("watch it resume.")).toBe(true);

    const again = panel(ada, "chat");
    await ask(again, "tell me more");
    const second = again.getByTestId("chat-assistant").nth(1);
    await second.filter({ hasText: "I am the offline demo model" }).waitFor();
    await again.getByTestId("chat-stop").click();
    await again
      .getByTestId("chat-status")
      .filter({ hasText: /^open$/ })
      .waitFor();
    const stopped = (await second.textContent()) ?? "";
    await ada.waitForTimeout(1000);
    expect(await second.textContent()).toBe(stopped);
    expect(stopped).not.toContain("watch it resume.");

    await again.getByTestId("chat-clear").click();
    await again.getByTestId("chat-messages").getByText("Ask something.").waitFor();
    await ada.reload();
    await panel(ada, "chat")
      .getByTestId("chat-messages")
      .getByText("Ask something.")
      .waitFor({ timeout: 15_000 });
  });
});

async function ask(chat: Locator, text: string): Promise<void> {
  await chat.getByTestId("chat-input").fill(text);
  await chat.getByTestId("chat-send").click();
}

function panel(page: Page, id: string): Locator {
  return page.getByTestId(`panel-${id}`);
}

async function signIn(page: Page, user: string): Promise<void> {
  await page.goto(demo!.appUrl);
  await page.getByTestId("user").fill(user);
  await page.getByTestId("sign-in").click();
  await page.getByTestId("signed-in-as").filter({ hasText: user }).waitFor();
}

async function waitOpen(view: Locator): Promise<void> {
  await view
    .getByTestId("status")
    .filter({ hasText: /^open$/ })
    .waitFor({ timeout: 15_000 });
}

async function post(view: Locator, text: string): Promise<void> {
  await view.getByTestId("input").fill(text);
  await view.getByTestId("input").press("Enter");
}

/** The text of an element once it holds something other than the "…" placeholder. */
async function waitForValue(element: Locator): Promise<string> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const text = (await element.textContent())?.trim() ?? "";
    if (text !== "" && text !== "…") return text;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error("no value appeared");
}

/** `npm start`'s entry point on free ports; resolves with the URLs it prints. */
async function startDemo(data: string): Promise<RunningDemo> {
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      "examples/demo/start.ts",
      "--app-port",
      APP_PORT,
      "--agent-port",
      AGENT_PORT,
      "--data-dir",
      join(data, "agents"),
      // Its own build folder, so a running `npm start` is not disturbed.
      "--dist-dir",
      join(data, "dist"),
      "--refresh-ttl",
      String(REFRESH_TTL),
    ],
    {
      cwd: ROOT,
      // Its own process group, so cleanup reaches anything it starts.
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, OUTPOST_LOG_LEVEL: "warn", NO_COLOR: "1" },
    },
  );
  const output: string[] = [];
  const running: RunningDemo = { process: child, appUrl: "", agentUrl: "", output };
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => fail("did not print its URLs within 60 s"), 60_000);
    function fail(why: string) {
      clearTimeout(timer);
      reject(new Error(`the demo ${why}:\n${output.join("")}`));
    }
    const onData = (chunk: Buffer) => {
      output.push(chunk.toString());
      const text = output.join("");
      const app = /App \(identity provider\): (http:\/\/\S+)/.exec(text)?.[1];
      const agents = /Agent server: +(http:\/\/\S+)/.exec(text)?.[1];
      if (app && agents) {
        clearTimeout(timer);
        running.appUrl = app;
        running.agentUrl = agents;
        resolve();
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", (chunk: Buffer) => output.push(chunk.toString()));
    child.once("exit", (code) => fail(`exited with ${code}`));
  });
  return running;
}

/** Ctrl-C, as a user would; then make sure nothing of it is left. */
async function stopDemo(running: RunningDemo | undefined): Promise<void> {
  const child = running?.process;
  if (child?.pid === undefined || child.exitCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  process.kill(-child.pid, "SIGINT");
  const timeout = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), 10_000));
  if ((await Promise.race([exited, timeout])) === "timeout") {
    process.kill(-child.pid, "SIGKILL");
    await exited;
  }
}

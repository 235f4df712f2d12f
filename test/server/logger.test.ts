import { Writable } from "node:stream";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createKeySet, issueToken, type KeySet, tokenAuth } from "../../src/auth/index.js";
import { Agent, type Connection } from "../../src/index.js";
import { redactUrl } from "../../src/server/logger.js";
import { assemble } from "../auth/forge.js";
import { startServer, type TestServer, wsUrl } from "../helpers/server.js";
import { waitFor } from "../helpers/wait.js";
import { connect, refused } from "../helpers/ws-client.js";

/** Property 7: no token in any log line, nor in `connection.uri`. */

const JWT = assemble({ alg: "HS256", typ: "JWT" }, { sub: "ada", exp: 2e9 }, "c2lnbmF0dXJl");

describe("redactUrl", () => {
  it("redacts the value of every configured param name", () => {
    expect(redactUrl("/agents/chat/a?access=opaque-secret&tag=x", ["access"])).toBe(
      "/agents/chat/a?access=[redacted]&tag=x",
    );
    expect(redactUrl("/a?Access=1", ["access"])).toBe("/a?Access=[redacted]");
    expect(redactUrl("/a?token=t&ticket=u&jwt=v&tag=x")).toBe(
      "/a?token=[redacted]&ticket=[redacted]&jwt=[redacted]&tag=x",
    );
  });

  it("redacts a JWT-shaped value anywhere in a URL", () => {
    expect(redactUrl(`/agents/chat/a?whatever=${JWT}`)).toBe("/agents/chat/a?whatever=[redacted]");
    expect(redactUrl(`/agents/chat/${JWT}?tag=x`)).toBe("/agents/chat/[redacted]?tag=x");
    expect(redactUrl(`/a?${JWT}=1`)).toBe("/a?[redacted]=1");
    expect(redactUrl(`/a?note=bearer%20${JWT}`)).toBe("/a?note=[redacted]");
    // Percent-encoding does not hide a token from the redaction.
    const encoded = [...JWT].map((c) => `%${c.charCodeAt(0).toString(16)}`).join("");
    expect(redactUrl(`/a?x=${encoded}`)).toBe("/a?x=[redacted]");
    expect(redactUrl(`/agents/chat/${encoded}`)).toBe("/agents/chat/[redacted]");
    expect(redactUrl(`http://u:p@h.example/a?x=1#${JWT}`)).toBe("http://h.example/a?x=1");
  });

  it("leaves ordinary URLs alone", () => {
    expect(redactUrl("/agents/chat/room-1?v=1.2.3&name=a.b")).toBe(
      "/agents/chat/room-1?v=1.2.3&name=a.b",
    );
    expect(redactUrl("/agents/chat/room-1")).toBe("/agents/chat/room-1");
  });
});

/** Every log line the server writes. */
class LogSink extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    this.lines.push(chunk.toString());
    done();
  }
}

class Room extends Agent {
  static uris: string[] = [];
  override onConnect(connection: Connection) {
    Room.uris.push(connection.uri);
  }
}

describe("no token in any log line (property 7)", () => {
  let keys: KeySet;
  let server: TestServer;
  const logs = new LogSink();

  beforeAll(async () => {
    keys = await createKeySet({ secret: "logger-suite-secret-0123456789abcdefgh" });
    server = await startServer(
      { Room },
      {
        logger: pino({ level: "debug" }, logs),
        auth: tokenAuth({ keys, param: "access", rateLimit: false }),
      },
    );
  });
  afterAll(() => server.stop());

  it("redacts a token under a configured param name and JWT-shaped values elsewhere in the URL", async () => {
    const good = await issueToken(keys, { sub: "ada", agent: "room", name: "r" });
    const other = await issueToken(keys, { sub: "bob", agent: "room", name: "r" });
    const forged = assemble({ alg: "HS256", typ: "JWT" }, { sub: "eve", exp: 2e9 }, "Zm9yZ2Vk");
    const client = await connect(wsUrl(server, `/agents/room/r?access=${good}&x=${other}`));
    await client.close();
    const closed = await refused(wsUrl(server, `/agents/room/r?access=${forged}&debug=${good}`));
    expect(closed.code).toBe(4001);
    await waitFor(() => logs.lines.some((l) => l.includes('"auth_refused"')), "a refusal line");
    expect(Room.uris).toEqual([expect.stringContaining("access=[redacted]&x=[redacted]")]);
    const text = logs.lines.join("") + Room.uris.join("");
    for (const secret of [good, other, forged]) {
      expect(text).not.toContain(secret);
      expect(text).not.toContain(secret.split(".")[2]);
    }
    expect(logs.lines.join("")).toContain("access=[redacted]&debug=[redacted]");
  });
});

import { type Socket, connect as tcpConnect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ChildServer, startChildServer, tempDir } from "./helpers.js";
import { tokenFor } from "./soak-auth.js";

/**
 * HTTP refuses before it reads: a caller whose token is refused is answered as soon as its
 * headers are in, and the server never buffers the body it is still sending. Measured on a
 * server in its own process, so the clients' buffers do not count.
 */
describe("HTTP refuses before it reads", () => {
  const data = tempDir();
  let server: ChildServer;

  beforeAll(async () => {
    server = await startChildServer({
      dataDir: data.dir,
      authModule: new URL("./soak-auth.ts", import.meta.url).pathname,
    });
  });

  afterAll(async () => {
    await server?.kill("SIGKILL");
    data.remove();
  });

  it("answers 150 forged tokens with half-sent 1 MiB bodies at once, and its memory barely grows", async () => {
    const half = Buffer.alloc(512 * 1024, 120);
    const valid = await tokenFor("mallory", "ledger", "room", 60);
    const forged = `${valid.slice(0, -4)}AAAA`;
    // Warm up: one refused request, so lazily loaded code is in memory before measuring.
    await fetch(`http://127.0.0.1:${server.port}/agents/ledger/room?token=${forged}`);
    const live = (stats: { heapUsed: number; arrayBuffers: number }) =>
      stats.heapUsed + stats.arrayBuffers;
    const before = live(await server.stats());
    const sockets: Socket[] = [];
    const answers = await Promise.all(
      Array.from(
        { length: 150 },
        () =>
          new Promise<string>((resolve) => {
            const socket = tcpConnect(server.port, "127.0.0.1");
            sockets.push(socket);
            let answer = "";
            socket.on("error", () => resolve(answer));
            socket.on("data", (d) => {
              answer += d.toString("latin1");
              if (answer.includes("\r\n\r\n")) resolve(answer);
            });
            socket.on("connect", () => {
              socket.write(
                `POST /agents/ledger/room?token=${forged} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
                  `Content-Type: application/octet-stream\r\nContent-Length: ${1024 * 1024}\r\n\r\n`,
              );
              // Half the body, and the rest never comes.
              socket.write(half);
            });
          }),
      ),
    );
    // Measured while every client is still connected, its body half sent. Chunks already
    // read when the answer went out are dropped as the server finishes each socket, so
    // look again for a few seconds; a server that buffers bodies holds them for good.
    let after = await server.stats();
    const deadline = Date.now() + 5_000;
    while (live(after) - before > 4 * 1024 * 1024 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      after = await server.stats();
    }
    for (const socket of sockets) socket.destroy();
    // Refused at once: bad signature, or locked out once the address failed too often.
    for (const answer of answers) expect(answer).toMatch(/^HTTP\/1\.1 (401|429) /);
    const grownMiB = (live(after) - before) / 1024 / 1024;
    console.log(
      `server heap and buffers grew ${grownMiB.toFixed(1)} MiB for 150 refused half-sent bodies`,
    );
    // Buffering the halves would keep 75 MiB alive.
    expect(grownMiB).toBeLessThan(4);
    expect(after.instances).toBe(0);
  });
});

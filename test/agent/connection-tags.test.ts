import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent, type Connection, type ConnectionContext, callable } from "../../src/index.js";
import { startServer, type TestServer, wsUrl } from "../helpers/server.js";
import { connect, type RawClient, refused } from "../helpers/ws-client.js";

/** Tags each connection with the `team` of its URL (async, like a lookup would be). */
class Lobby extends Agent {
  override async getConnectionTags(_connection: Connection, ctx: ConnectionContext) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    const url = new URL(ctx.request.url);
    if (url.searchParams.has("many")) return Array.from({ length: 10 }, (_, i) => `t${i}`);
    if (url.searchParams.has("notstrings")) return [42] as unknown as string[];
    const team = url.searchParams.get("team");
    return team === null ? [] : [team, "players", team];
  }

  override onConnect(connection: Connection) {
    connection.send(JSON.stringify({ type: "tags-at-connect", tags: connection.tags }));
  }

  @callable()
  roster(tag: string) {
    return [...this.getConnections(tag)].map((connection) => connection.id);
  }

  @callable()
  everyone() {
    return [...this.getConnections()].map((connection) => connection.id);
  }
}

describe("connection tags", () => {
  let server: TestServer;
  const clients: RawClient[] = [];
  beforeAll(async () => {
    server = await startServer({ Lobby });
  });
  afterAll(async () => {
    for (const client of clients) client.ws.close();
    await server?.stop();
  });

  async function join(room: string, team?: string) {
    const query = team === undefined ? "" : `?team=${team}`;
    const client = await connect(wsUrl(server, `/agents/lobby/${room}${query}`));
    clients.push(client);
    const { tags } = client.frames("tags-at-connect")[0] as { tags: string[] };
    return { client, id: tags[0]!, tags };
  }

  it("getConnections(tag) returns only the connections getConnectionTags gave that tag", async () => {
    const red1 = await join("r1", "red");
    const red2 = await join("r1", "red");
    const blue = await join("r1", "blue");
    const untagged = await join("r1");
    expect((await red1.client.rpc<string[]>("roster", ["red"])).sort()).toEqual(
      [red1.id, red2.id].sort(),
    );
    expect(await red1.client.rpc("roster", ["blue"])).toEqual([blue.id]);
    expect((await red1.client.rpc<string[]>("roster", ["players"])).sort()).toEqual(
      [red1.id, red2.id, blue.id].sort(),
    );
    expect(await red1.client.rpc("roster", ["green"])).toEqual([]);
    expect(await red1.client.rpc<string[]>("everyone")).toContain(untagged.id);
  });

  it("connection.tags holds the id first, then the tags without duplicates, already in onConnect", async () => {
    const red = await join("r2", "red");
    expect(red.tags).toEqual([red.id, "red", "players"]);
    const untagged = await join("r2");
    expect(untagged.tags).toEqual([untagged.id]);
  });

  it("every connection carries its own id as a tag", async () => {
    const a = await join("r3", "red");
    const b = await join("r3");
    expect(await a.client.rpc("roster", [a.id])).toEqual([a.id]);
    expect(await a.client.rpc("roster", [b.id])).toEqual([b.id]);
  });

  it("a closed connection no longer answers to its tags", async () => {
    const stays = await join("r4", "red");
    const leaves = await join("r4", "red");
    await leaves.client.close();
    const roster = async () => stays.client.rpc<string[]>("roster", ["red"]);
    // The close reaches the instance after the socket is gone; ask until it has.
    for (let i = 0; i < 100 && (await roster()).length > 1; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(await roster()).toEqual([stays.id]);
    expect(await stays.client.rpc("roster", [leaves.id])).toEqual([]);
  });

  it("refuses a connection whose tags break the limits with 1011, sending nothing else", async () => {
    for (const query of ["many", "notstrings"]) {
      const result = await refused(wsUrl(server, `/agents/lobby/r5?${query}`));
      expect(result.code).toBe(1011);
      expect(result.received).toEqual([]);
    }
  });
});

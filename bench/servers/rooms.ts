/**
 * Room state for the two servers the bench writes itself (bare and Socket.IO). Outpost keeps
 * each instance's state in its SQLite database, so a restarted Outpost gives reconnecting
 * clients the state they had; for the comparison to hold, these two keep theirs in the data
 * directory as well: one small JSON file, written synchronously on every change (as SQLite
 * commits), read once at start.
 */
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface RoomState {
  n: number;
}

export class RoomStates {
  readonly #file: string;
  readonly #states = new Map<string, RoomState>();

  constructor(dataDir: string) {
    this.#file = join(dataDir, "rooms.json");
    let saved: Record<string, RoomState> = {};
    try {
      saved = JSON.parse(readFileSync(this.#file, "utf8")) as Record<string, RoomState>;
    } catch {
      // First start: no file yet.
    }
    for (const [name, state] of Object.entries(saved)) this.#states.set(name, state);
  }

  get(name: string): RoomState {
    return this.#states.get(name) ?? { n: 0 };
  }

  /** The next state of `name`, persisted before it is returned (so before it is broadcast). */
  bump(name: string): RoomState {
    const state = { n: this.get(name).n + 1 };
    this.#states.set(name, state);
    // Write then rename, so a kill mid-write leaves the previous file, as a database would.
    writeFileSync(`${this.#file}.tmp`, JSON.stringify(Object.fromEntries(this.#states)));
    renameSync(`${this.#file}.tmp`, this.#file);
    return state;
  }
}

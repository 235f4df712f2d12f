import type { ServerConnection } from "./connection.js";

/** Cloudflare's limits on hibernatable WebSocket tags, kept so an agent ports both ways. */
const MAX_TAGS = 9;
const MAX_TAG_LENGTH = 256;

/**
 * Check what `getConnectionTags` returned and put the connection's id first, as the SDK
 * does. Duplicates are dropped; anything but a list of non-empty strings within the limits
 * throws, and the connection is refused like one whose `onConnect` threw.
 */
export function connectionTags(id: string, given: unknown): readonly string[] {
  if (!Array.isArray(given)) throw new TypeError("getConnectionTags() must return an array");
  const tags = [id];
  for (const tag of given) {
    if (typeof tag !== "string" || tag.length === 0 || tag.length > MAX_TAG_LENGTH) {
      throw new TypeError(
        `getConnectionTags(): each tag must be a string of 1 to ${MAX_TAG_LENGTH} characters`,
      );
    }
    if (!tags.includes(tag)) tags.push(tag);
  }
  if (tags.length - 1 > MAX_TAGS) {
    throw new TypeError(`getConnectionTags(): at most ${MAX_TAGS} tags per connection`);
  }
  return tags;
}

/**
 * Which connections carry which tag, so `getConnections(tag)` does not walk every
 * connection of a busy instance. Connections without tags of their own are not indexed.
 */
export class TagIndex {
  readonly #byTag = new Map<string, Set<ServerConnection>>();

  add(connection: ServerConnection, tags: readonly string[]): void {
    // The first tag is the id, which the instance looks up directly.
    for (let i = 1; i < tags.length; i++) {
      const tag = tags[i]!;
      let set = this.#byTag.get(tag);
      if (set === undefined) {
        set = new Set();
        this.#byTag.set(tag, set);
      }
      set.add(connection);
    }
  }

  remove(connection: ServerConnection): void {
    const { tags } = connection;
    for (let i = 1; i < tags.length; i++) {
      const set = this.#byTag.get(tags[i]!);
      set?.delete(connection);
      if (set?.size === 0) this.#byTag.delete(tags[i]!);
    }
  }

  /** The connections carrying `tag` (not its id: the instance answers that itself). */
  get(tag: string): Iterable<ServerConnection> {
    return this.#byTag.get(tag) ?? [];
  }
}

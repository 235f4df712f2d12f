import type { Session } from "./App.js";
import { currentUserOrNull, getAuthToken } from "./api.js";

/** The signed-in user and a token for the static panel, or `null` when signed out. */
export async function loadSession(): Promise<Session | null> {
  const user = await currentUserOrNull();
  if (user === null) return null;
  return { user, token: await getAuthToken() };
}

/**
 * What the page asks its own server (the identity provider, same origin as the page), and
 * where the agents live (another origin).
 */

/** Origin of the agent server, put into the page by the identity provider when it serves it. */
export const AGENT_HOST =
  document.querySelector<HTMLMetaElement>('meta[name="outpost-agent-origin"]')?.content ??
  "http://localhost:8787";

/** Lifetime in seconds of the refresh panel's tokens (30 unless the demo was told otherwise). */
export const REFRESH_TTL =
  Number(document.querySelector<HTMLMetaElement>('meta[name="outpost-refresh-ttl"]')?.content) ||
  30;

/** The signed-in user, as the identity provider knows it. */
export interface User {
  id: string;
  name: string;
}

/** Every panel chats in the same room, so a line sent anywhere shows up everywhere. */
export const ROOM = "lobby";

async function getJson<T>(path: string, init?: RequestInit): Promise<T> {
  const res = await fetch(path, { credentials: "same-origin", ...init });
  if (!res.ok) {
    // The server says why in `{ error }`; the status alone ("400") tells the user nothing.
    const body = (await res.json().catch(() => ({}))) as { error?: unknown };
    throw new Error(typeof body.error === "string" ? body.error : `${path}: ${res.status}`);
  }
  return (await res.json()) as T;
}

/** Sign in with a name (the demo has no passwords). */
export function login(user: string): Promise<{ user: string }> {
  return getJson("/api/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user }),
  });
}

export function logout(): Promise<unknown> {
  return getJson("/api/logout", { method: "POST" });
}

/**
 * The signed-in user, or `null`. Asks `/api/session`, which answers 200 either way: a
 * signed-out page load is normal and must not log a failed request in the console.
 */
export async function currentUserOrNull(): Promise<User | null> {
  const { user } = await getJson<{ user: User | null }>("/api/session");
  return user;
}

/** The seed page's `getCurrentUser()`. */
export function getCurrentUser(): Promise<User> {
  return getJson<User>("/api/me");
}

/**
 * The seed page's `getAuthToken()`: a short-lived EdDSA token for the room, signed by the
 * identity provider. `kind: "refresh"` asks for the 30-second tokens of the refresh panel.
 */
export async function getAuthToken(kind: "normal" | "refresh" = "normal"): Promise<string> {
  const { token } = await getJson<{ token: string }>(`/api/token?name=${ROOM}&kind=${kind}`);
  return token;
}

/**
 * A token whose signature no longer matches: one character of the signature changed. The
 * agent server refuses it with close code 4001, which is what the "bad token" buttons show.
 */
export function tamper(token: string): string {
  const dot = token.lastIndexOf(".");
  const signature = token.slice(dot + 1);
  // Change a middle character: the last one may only carry padding bits.
  const at = Math.floor(signature.length / 2);
  const swapped = signature[at] === "A" ? "B" : "A";
  return `${token.slice(0, dot + 1)}${signature.slice(0, at)}${swapped}${signature.slice(at + 1)}`;
}

/** Seconds left until a JWT's `exp`, read from its payload (no verification: display only). */
export function secondsLeft(token: string | null | undefined): number | null {
  const payload = token?.split(".")[1];
  if (payload === undefined) return null;
  try {
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    const { exp } = JSON.parse(json) as { exp?: number };
    return typeof exp === "number" ? Math.round(exp - Date.now() / 1000) : null;
  } catch {
    return null;
  }
}

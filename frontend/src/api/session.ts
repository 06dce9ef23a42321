// The login session: access + refresh token in localStorage, refreshed once when a request
// answers 401. Every request to the API goes through `authFetch` (the typed client, the
// chat stream, uploads and downloads), so this is the one place that knows about tokens.
import type { components } from "./schema";

type Schemas = components["schemas"];
type TokenPair = Schemas["TokenPair"];

const KEY = "kt.session";
type Stored = { access: string; refresh: string };
type Listener = () => void;

const listeners = new Set<Listener>();

function read(): Stored | null {
  try {
    const raw = localStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as Stored) : null;
  } catch {
    return null;
  }
}

export function hasSession(): boolean {
  return read() !== null;
}

export function saveTokens(pair: TokenPair): void {
  localStorage.setItem(
    KEY,
    JSON.stringify({ access: pair.access_token, refresh: pair.refresh_token }),
  );
}

export function refreshToken(): string | null {
  return read()?.refresh ?? null;
}

/** Forget the tokens and tell the app (it sends the user to the login page). */
export function clearSession(): void {
  localStorage.removeItem(KEY);
  for (const listener of listeners) listener();
}

/** Called when the session ends by itself (refresh refused). */
export function onSessionEnded(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export type LimitReached = Schemas["LimitExceededRead"];
const limitListeners = new Set<(limit: LimitReached) => void>();

/** A plan limit was reached somewhere (a 402 with `upgrade_url`): the app offers an upgrade. */
export function onLimitReached(listener: (limit: LimitReached) => void): () => void {
  limitListeners.add(listener);
  return () => limitListeners.delete(listener);
}

async function reportLimit(response: Response): Promise<void> {
  const body = await response
    .clone()
    .json()
    .catch(() => null);
  if (body && typeof body === "object" && "upgrade_url" in body) {
    for (const listener of limitListeners) listener(body as LimitReached);
  }
}

let refreshing: Promise<boolean> | null = null;

/** Trade the refresh token for a new pair; concurrent callers share one request
 * (the server rotates refresh tokens: a second use of the old one would fail). */
function refresh(): Promise<boolean> {
  refreshing ??= (async () => {
    const stored = read();
    if (!stored) return false;
    const response = await fetch("/api/auth/refresh", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: stored.refresh }),
    });
    if (!response.ok) return false;
    saveTokens((await response.json()) as TokenPair);
    return true;
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

function withToken(request: Request): Request {
  const access = read()?.access;
  if (!access) return request;
  const headers = new Headers(request.headers);
  headers.set("Authorization", `Bearer ${access}`);
  return new Request(request, { headers });
}

/** fetch with the access token; on 401, refresh once and retry; if that fails the
 * session is over (listeners send the user to log in, then back). A 402 for a plan
 * limit is announced to the upgrade prompt; the caller still gets the response. */
export async function authFetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
  // Absolute URLs: the browser resolves "/api/…" itself, other runtimes (tests) do not.
  const url = typeof input === "string" ? new URL(input, window.location.href) : input;
  const request = new Request(url, init);
  const retry = request.clone();
  let response = await fetch(withToken(request));
  if (response.status === 401 && read()) {
    if (await refresh()) response = await fetch(withToken(retry));
    else clearSession();
  }
  if (response.status === 402) await reportLimit(response);
  return response;
}

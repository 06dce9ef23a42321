import { authFetch, clearSession, hasSession, onSessionEnded, saveTokens } from "./session";

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });

function fakeServer(validAccess: string, refreshOk = true) {
  const calls: { url: string; auth: string | null }[] = [];
  let access = "old";
  const fetchMock = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    // Node's Request needs an absolute URL; the browser resolves "/api/…" itself.
    const absolute = typeof input === "string" ? new URL(input, "http://localhost") : input;
    const request = new Request(absolute, init);
    const url = new URL(request.url).pathname;
    calls.push({ url, auth: request.headers.get("Authorization") });
    if (url === "/api/auth/refresh") {
      if (!refreshOk) return json(401, { detail: "Refresh token expired" });
      access = validAccess;
      return json(200, {
        access_token: access,
        refresh_token: "r2",
        token_type: "bearer",
        expires_in: 900,
      });
    }
    return request.headers.get("Authorization") === `Bearer ${validAccess}`
      ? json(200, { ok: true })
      : json(401, { detail: "Token expired" });
  });
  vi.stubGlobal("fetch", fetchMock);
  return { calls, access: () => access };
}

describe("authFetch", () => {
  beforeEach(() => {
    saveTokens({ access_token: "old", refresh_token: "r1", token_type: "bearer", expires_in: 900 });
  });
  afterEach(() => vi.unstubAllGlobals());

  it("refreshes an expired access token once and retries the request", async () => {
    const server = fakeServer("new");
    const response = await authFetch("http://localhost/api/projects", {
      method: "POST",
      body: "{}",
    });
    expect(response.status).toBe(200);
    expect(server.calls.map((c) => c.url)).toEqual([
      "/api/projects",
      "/api/auth/refresh",
      "/api/projects",
    ]);
    expect(server.calls[2].auth).toBe("Bearer new");
  });

  it("shares one refresh between requests that fail together", async () => {
    const server = fakeServer("new");
    await Promise.all([authFetch("http://localhost/api/a"), authFetch("http://localhost/api/b")]);
    expect(server.calls.filter((c) => c.url === "/api/auth/refresh")).toHaveLength(1);
  });

  it("ends the session when the refresh token is refused", async () => {
    fakeServer("new", false);
    const ended = vi.fn();
    const unsubscribe = onSessionEnded(ended);
    const response = await authFetch("http://localhost/api/projects");
    unsubscribe();
    expect(response.status).toBe(401);
    expect(ended).toHaveBeenCalledOnce();
    expect(hasSession()).toBe(false);
    clearSession();
  });
});

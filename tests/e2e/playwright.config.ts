// Browser tests against the real backend (tests/e2e/stack.py: embedded Postgres, the app,
// the Anthropic stand-in) and the built SPA served by `vite preview`, which proxies /api.
// Debian's Chromium, one worker: the tests share one backend and 2 cores.
import { readFileSync } from "node:fs";
import path from "node:path";
import { defineConfig } from "@playwright/test";
import { ADMIN } from "./helpers";

const root = path.resolve(import.meta.dirname, "../..");
const apiPort = process.env.E2E_API_PORT ?? "8765";
const webPort = process.env.E2E_WEB_PORT ?? "4180";
const sentryPort = process.env.E2E_SENTRY_PORT ?? "8768";

/** The production Content-Security-Policy, as roles/nginx's defaults write it. */
function productionCsp(): string {
  const defaults = readFileSync(path.join(root, "roles/nginx/defaults/main.yml"), "utf8");
  const folded = /^nginx_content_security_policy: >-\n((?: {2}.*\n)+)/m.exec(defaults);
  if (!folded)
    throw new Error("nginx_content_security_policy not found in roles/nginx/defaults/main.yml");
  return folded[1].replace(/\s+/g, " ").trim();
}

/** The policy nginx sends when the browser has a Sentry DSN: its origin (here the stack's
 * Sentry stand-in) in connect-src (roles/nginx: nginx_csp_connect_sources), or the browser
 * refuses the reports. */
function cspWithSentry(csp: string): string {
  const sentry = `http://127.0.0.1:${sentryPort}`;
  const rendered = csp.replace(
    /\{\{\s*\(\["'self'"\]\s*\+\s*nginx_csp_connect_sources\)\s*\|\s*join\(' '\)\s*\}\}/,
    `'self' ${sentry}`,
  );
  if (rendered !== csp) return rendered;
  if (csp.includes("{{") || !csp.includes("connect-src 'self'"))
    throw new Error(`cannot add the Sentry origin to connect-src of: ${csp}`);
  return csp.replace("connect-src 'self'", `connect-src 'self' ${sentry}`);
}

export default defineConfig({
  testDir: ".",
  // testhost.spec.ts runs against a provisioned host (playwright.testhost.config.ts).
  testIgnore: "testhost.spec.ts",
  outputDir: "output/test-results",
  timeout: 180_000,
  expect: { timeout: 15_000 },
  workers: 1,
  reporter: [["list"], ["html", { outputFolder: "output/report", open: "never" }]],
  use: {
    baseURL: `http://127.0.0.1:${webPort}`,
    browserName: "chromium",
    viewport: { width: 1440, height: 900 },
    trace: "retain-on-failure",
    screenshot: "only-on-failure",
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
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
    },
  },
  webServer: [
    {
      command: `${root}/.venv/bin/python tests/e2e/stack.py`,
      cwd: root,
      url: `http://127.0.0.1:${apiPort}/api/readyz`,
      timeout: 120_000,
      reuseExistingServer: false,
      gracefulShutdown: { signal: "SIGTERM", timeout: 20_000 },
      env: {
        E2E_API_PORT: apiPort,
        E2E_WEB_PORT: webPort,
        E2E_SENTRY_PORT: sentryPort,
        E2E_ADMIN_EMAIL: ADMIN.email,
        E2E_ADMIN_PASSWORD: ADMIN.password,
      },
      stdout: "pipe",
    },
    {
      // The production build, as nginx serves it (SPA fallback included).
      command: `npm run build && npx vite preview --host 127.0.0.1 --port ${webPort} --strictPort`,
      cwd: path.join(root, "frontend"),
      url: `http://127.0.0.1:${webPort}/`,
      timeout: 120_000,
      reuseExistingServer: false,
      gracefulShutdown: { signal: "SIGTERM", timeout: 5_000 },
      env: { KT_API_URL: `http://127.0.0.1:${apiPort}`, KT_CSP: cspWithSentry(productionCsp()) },
    },
  ],
});

// The browser journey against a provisioned test host (tests/infra/test_browser.py sets
// E2E_TESTHOST_URL and E2E_TESTHOST_ADDRESS): no local stack; nginx, TLS and the app
// are the host's. Chromium resolves the test domain to the host's address itself.
import { defineConfig } from "@playwright/test";
import base from "./playwright.config";

const site = new URL(process.env.E2E_TESTHOST_URL ?? "https://kt-test.knowledgetree.test");
const address = process.env.E2E_TESTHOST_ADDRESS ?? "10.99.0.11";

export default defineConfig({
  ...base,
  testIgnore: [],
  testMatch: "testhost.spec.ts",
  outputDir: "output/testhost-results",
  reporter: [["list"]],
  webServer: undefined,
  use: {
    ...base.use,
    baseURL: site.origin,
    // The certificate comes from pebble, whose root Chromium does not know; the chain
    // and protocols are checked by tests/infra/test_tls.py.
    ignoreHTTPSErrors: true,
    launchOptions: {
      ...base.use?.launchOptions,
      args: [
        ...(base.use?.launchOptions?.args ?? []),
        `--host-resolver-rules=MAP ${site.hostname} ${address}`,
      ],
    },
  },
});

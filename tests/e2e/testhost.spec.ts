// The journey once more, against a provisioned test host through its nginx and TLS: the
// SPA fallback, the production Content-Security-Policy (the `test` fixture fails on any
// violation) and SSE through the proxy are only real there. Run by
// tests/infra/test_browser.py with playwright.testhost.config.ts; the host answers in
// offline mode (inventories/local sets no Anthropic key), quoting the passages it cites.
import { ask, expect, makePdf, signUp, test } from "./helpers";

const HANDBOOK = [
  "Larch Valley Orchard handbook",
  "The apple harvest at Larch Valley starts in the first week of October.",
  "Pickers work in teams of four and each team fills twelve crates a day.",
  "Visitors must sign in at the barn office and wear boots in the rows.",
];

test("through nginx and TLS: sign up, upload a PDF, ask, open the cited passage, reload a deep link", async ({
  page,
}) => {
  await page.goto("/");
  await expect(page).toHaveURL(/\/login/);
  await signUp(page, `browser-${Date.now()}@example.com`);

  await page.getByRole("link", { name: "Projects" }).click();
  await page.getByLabel("Name").fill("Orchard");
  await page.getByRole("button", { name: "Create project" }).click();
  await page.getByRole("link", { name: "Orchard" }).click();
  await page
    .getByTestId("file-input")
    .setInputFiles([
      { name: "handbook.pdf", mimeType: "application/pdf", buffer: makePdf(HANDBOOK) },
    ]);
  const row = page
    .getByRole("list", { name: "Documents" })
    .getByRole("listitem")
    .filter({ hasText: "handbook.pdf" });
  await expect(row.getByText("ready")).toBeVisible({ timeout: 120_000 });

  await page.getByRole("link", { name: "Chat with this project" }).click();
  await ask(page, "When does the apple harvest start?");
  // The stream came through nginx (unbuffered): the Stop button goes when `done` arrives.
  await expect(page.getByRole("button", { name: "Stop" })).toBeHidden({ timeout: 60_000 });
  const answer = page.getByRole("article", { name: "Answer" }).last();
  await expect(answer).toContainText("first week of October");
  await answer.getByRole("button", { name: "Source 1" }).first().click();
  const sources = page.getByRole("list", { name: "Sources" });
  await expect(sources.locator(".source.selected")).toContainText("handbook.pdf");

  // A deep link loaded fresh from nginx: the SPA fallback serves index.html for it, and
  // the session (refresh token) brings the same conversation back.
  await expect(page).toHaveURL(/\/chat\/[0-9a-f-]{36}/);
  await page.goto(page.url());
  await expect(page.getByRole("article", { name: "Answer" }).last()).toContainText(
    "first week of October",
  );
});

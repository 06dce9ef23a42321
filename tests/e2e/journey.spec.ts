// The journey a new user takes, in one browser session against the real backend:
// sign up, a project, a PDF, a streamed cited answer, Stop, an error with Retry,
// reload, rename/export/delete, artifacts. Screenshots of each main page go to
// output/screenshots; each main page gets an axe scan.
import { readFile } from "node:fs/promises";
import type { Page } from "@playwright/test";
import {
  ask,
  expect,
  expectAccessible,
  lastMail,
  makePdf,
  screenshot,
  scriptModel,
  signUp,
  test,
  unique,
} from "./helpers";

const HANDBOOK = [
  "Larch Valley Orchard handbook",
  "The apple harvest at Larch Valley starts in the first week of October.",
  "Pickers work in teams of four and each team fills twelve crates a day.",
  "Irrigation runs at dawn from May to August, never in the afternoon heat.",
  "Pruning of the pear trees happens in February, before the buds open.",
  "Visitors must sign in at the barn office and wear boots in the rows.",
];

const RICH_ANSWER = [
  "The apple harvest at Larch Valley **starts in the first week of October** [1].",
  "Pickers work in teams of four, and each team fills twelve crates a day [1].\n\n",
  "| Task | When |\n|---|---|\n| Apple harvest | first week of October |\n",
  "| Irrigation | at dawn, May to August |\n| Pear pruning | February |\n\n",
  "Visitors sign in at the barn office and wear boots in the rows [1].",
].join(" ");

/** Records, in the page, the length of the live answer each time it changes. */
async function recordAnswerGrowth(
  page: Page,
): Promise<() => Promise<{ length: number; at: number }[]>> {
  await page.evaluate(() => {
    const log = document.querySelector('[role="log"]') as HTMLElement;
    const seen: { length: number; at: number }[] = [];
    (window as unknown as { growth: typeof seen }).growth = seen;
    new MutationObserver(() => {
      const answers = log.querySelectorAll('article[aria-label="Answer"]');
      const length = answers[answers.length - 1]?.textContent?.length ?? 0;
      if (length > 0 && seen.at(-1)?.length !== length)
        seen.push({ length, at: performance.now() });
    }).observe(log, { childList: true, subtree: true, characterData: true });
  });
  return () =>
    page.evaluate(() => (window as unknown as { growth: { length: number; at: number }[] }).growth);
}

const distanceFromBottom = (page: Page) =>
  page
    .getByRole("log", { name: "Messages" })
    .evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight);

test("a new user signs up, uploads a PDF and chats with cited answers", async ({ page }) => {
  // Every run has a fresh database (stack.py): plain names make readable screenshots.
  const email = "ann@larchvalley.test";

  await test.step("sign up (from the login page)", async () => {
    await page.goto("/");
    await expect(page).toHaveURL(/\/login/);
    await expect(page.getByRole("heading", { name: "Log in" })).toBeVisible();
    await expectAccessible(page, "login page");
    await screenshot(page, "login");
    await page.getByRole("link", { name: "Sign up" }).click();
    await page.getByLabel("Password").fill("short");
    await signUp(page, email);
    await expect(page.getByText(email)).toBeVisible();
  });

  const projectName = "Larch Valley Orchard";
  await test.step("create and rename a project", async () => {
    await page.getByRole("link", { name: "Projects" }).click();
    await page.getByLabel("Name").fill("Draft name");
    await page.getByRole("button", { name: "Create project" }).click();
    await page.getByRole("button", { name: "Rename" }).click();
    const dialog = page.getByRole("dialog", { name: "Rename project" });
    await dialog.getByLabel("New name").fill(projectName);
    await dialog.getByRole("button", { name: "Save" }).click();
    await expect(page.getByRole("link", { name: projectName })).toBeVisible();
    await expectAccessible(page, "projects page");
    await screenshot(page, "projects");
  });

  await test.step("upload a PDF and an unsupported file", async () => {
    await page.getByRole("link", { name: projectName }).click();
    await expect(page.getByRole("heading", { name: projectName })).toBeVisible();
    await page.getByTestId("file-input").setInputFiles([
      { name: "handbook.pdf", mimeType: "application/pdf", buffer: makePdf(HANDBOOK) },
      {
        name: "photo.bin",
        mimeType: "application/octet-stream",
        buffer: Buffer.from([0, 159, 146, 150, 1, 2, 3, 255, 0, 7]),
      },
    ]);
    // The server's own reason for the refused file.
    await expect(page.getByRole("alert")).toContainText("photo.bin:");
    const row = page
      .getByRole("list", { name: "Documents" })
      .getByRole("listitem")
      .filter({ hasText: "handbook.pdf" });
    await expect(row.getByText("ready")).toBeVisible({ timeout: 120_000 });
    await expect(row).toContainText("1 page");
    // Drag and drop: a Markdown file dropped on the zone, then deleted (with confirmation).
    const dropped = await page.evaluateHandle(() => {
      const transfer = new DataTransfer();
      transfer.items.add(
        new File(["# Notes\n\nThe barn closes at six."], "notes.md", { type: "text/markdown" }),
      );
      return transfer;
    });
    await page
      .getByRole("region", { name: "Upload documents" })
      .dispatchEvent("drop", { dataTransfer: dropped });
    const notes = page
      .getByRole("list", { name: "Documents" })
      .getByRole("listitem")
      .filter({ hasText: "notes.md" });
    await expect(notes.getByText("ready")).toBeVisible({ timeout: 60_000 });
    await notes.getByRole("button", { name: "Delete notes.md" }).click();
    await page
      .getByRole("dialog", { name: "Delete document?" })
      .getByRole("button", { name: "Delete document" })
      .click();
    await expect(notes).toHaveCount(0);
    await expectAccessible(page, "project page");
    await screenshot(page, "project");
  });

  await test.step("ask: tokens arrive one by one and the sources panel fills", async () => {
    await page.getByRole("link", { name: "Chat with this project" }).click();
    // A model-like answer (Markdown, a table, citations) for the screenshot the README shows.
    await scriptModel({ text: RICH_ANSWER });
    const growth = await recordAnswerGrowth(page);
    await ask(page, "When does the apple harvest start, and how many crates does a team fill?");
    const stop = page.getByRole("button", { name: "Stop" });
    await expect(stop).toBeVisible();
    await expect(page.getByRole("status")).toContainText("The answer is being written");
    await expect(stop).toBeHidden({ timeout: 30_000 });
    // Many small steps over time, not one block at the end.
    const steps = await growth();
    expect(steps.length, JSON.stringify(steps)).toBeGreaterThan(5);
    expect(steps[steps.length - 1].at - steps[0].at).toBeGreaterThan(500);
    const sources = page.getByRole("list", { name: "Sources" });
    await expect(sources.getByRole("listitem").first()).toContainText("handbook.pdf");
    await expect(sources.getByRole("listitem").first()).toContainText("similarity");
    await expect(page).toHaveURL(/\/chat\/[0-9a-f-]{36}/);
    // The saved answer, with its citations as buttons that open the passage.
    const citation = page
      .getByRole("article", { name: "Answer" })
      .last()
      .getByRole("button", { name: "Source 1" })
      .first();
    await citation.click();
    await expect(sources.locator(".source.selected")).toContainText("harvest");
    await expectAccessible(page, "chat page");
    await screenshot(page, "chat");
  });

  await test.step("stop a stream: what arrived is kept and marked incomplete", async () => {
    await scriptModel({
      text: `Visitors sign in at the barn office [1]. ${"They wear boots in the rows. ".repeat(30)}`,
    });
    await ask(page, "What are the rules for visitors?");
    const answer = page.getByRole("article", { name: "Answer" }).last();
    await expect(answer).toContainText("barn office", { timeout: 20_000 });
    // Auto-scroll follows the answer, and stops while the reader scrolls up.
    await page.setViewportSize({ width: 1440, height: 560 });
    const log = page.getByRole("log", { name: "Messages" });
    expect(await log.evaluate((el) => el.scrollHeight - el.clientHeight)).toBeGreaterThan(100);
    await expect.poll(() => distanceFromBottom(page)).toBeLessThan(48);
    await page.getByRole("log", { name: "Messages" }).evaluate((el) => el.scrollTo(0, 0));
    await page.waitForTimeout(800); // several tokens arrive meanwhile
    expect(await page.getByRole("log", { name: "Messages" }).evaluate((el) => el.scrollTop)).toBe(
      0,
    );
    await page.setViewportSize({ width: 1440, height: 900 });
    await page.getByRole("button", { name: "Stop" }).click();
    await expect(page.getByRole("button", { name: "Send" })).toBeVisible();
    await expect(answer.getByRole("note")).toContainText("Incomplete answer");
    await expect(answer).toContainText("barn office");
    await expect(answer).not.toContainText("They wear boots in the rows. ".repeat(30).trim());
  });

  await test.step("an error event shows a banner; Retry asks again", async () => {
    await scriptModel({ failure: "midstream_error", fail_after_tokens: 4 });
    await ask(page, "When are the pear trees pruned?");
    const banner = page
      .getByRole("alert")
      .filter({ hasText: /overloaded|unavailable|busy|try again/i });
    await expect(banner).toBeVisible({ timeout: 30_000 });
    await banner.getByRole("button", { name: "Retry" }).click();
    await expect(banner).toBeHidden();
    await expect(page.getByRole("button", { name: "Send" })).toBeVisible({ timeout: 30_000 });
    const answer = page.getByRole("article", { name: "Answer" }).last();
    await expect(answer).toContainText("Passage 1 says");
    await expect(answer.getByRole("note")).toHaveCount(0); // complete this time
  });

  await test.step("reload: the same conversation, with citations", async () => {
    const url = page.url();
    await page.reload();
    await expect(page).toHaveURL(url);
    await expect(page.getByRole("article", { name: "Question" })).toHaveCount(4);
    await expect.poll(() => distanceFromBottom(page)).toBeLessThan(48); // opens at the newest
    await expect(
      page.getByRole("article", { name: "Answer" }).nth(1).getByRole("note"),
    ).toContainText("Incomplete answer");
    await page
      .getByRole("article", { name: "Answer" })
      .first()
      .getByRole("button", { name: "Source 1" })
      .first()
      .click();
    await expect(
      page.getByRole("list", { name: "Sources" }).locator(".source.selected"),
    ).toBeVisible();
  });

  await test.step("artifacts: save an answer, edit it, see the versions", async () => {
    await page
      .getByRole("article", { name: "Answer" })
      .first()
      .getByRole("button", { name: "Save as artifact" })
      .click();
    const panel = page.getByRole("region", { name: /^Artifact / });
    await expect(panel).toBeVisible();
    await panel.getByRole("button", { name: "Edit" }).click();
    await panel
      .getByLabel("Content (Markdown)")
      .fill("# Harvest notes\n\n| month | work |\n|---|---|\n| October | harvest |");
    await panel.getByRole("button", { name: "Save as new version" }).click();
    await expect(panel.getByRole("table")).toBeVisible();
    await expect(panel.getByLabel("Version")).toContainText("v2 · edited");
    await panel.getByLabel("Version").selectOption("1");
    await expect(panel.getByRole("button", { name: "Restore v1" })).toBeVisible();
    await screenshot(page, "artifact");
    const download = page.waitForEvent("download");
    await panel.getByRole("button", { name: "Download" }).click();
    expect((await download).suggestedFilename()).toMatch(/\.md$/);
    await panel.getByRole("button", { name: "← All artifacts" }).click();
    await page.getByLabel("Make an artifact").fill("a checklist for new pickers");
    await page.getByRole("button", { name: "Create" }).click();
    const made = page.getByRole("region", { name: /^Artifact / });
    await expect(made).toBeVisible({ timeout: 30_000 });
    await made.getByRole("button", { name: "Regenerate" }).click();
    await expect(made.getByLabel("Version")).toContainText("v2 · regenerated", { timeout: 30_000 });
    await made.getByRole("button", { name: "← All artifacts" }).click();
    const artifacts = page.getByRole("region", { name: "Artifacts" }).getByRole("listitem");
    await expect(artifacts).toHaveCount(2);
    await artifacts.first().getByRole("button").click();
    await page
      .getByRole("region", { name: /^Artifact / })
      .getByRole("button", { name: "Delete" })
      .click();
    await page
      .getByRole("dialog", { name: "Delete artifact?" })
      .getByRole("button", { name: "Delete artifact" })
      .click();
    await expect(artifacts).toHaveCount(1);
  });

  await test.step("rename, export and delete the conversation", async () => {
    const sidebar = page.getByRole("navigation", { name: "Conversations" });
    const item = sidebar.getByRole("listitem").first();
    await item.getByRole("button", { name: /^Rename/ }).click();
    await item.getByLabel("New title").fill("Harvest questions");
    await item.getByLabel("New title").press("Enter");
    await expect(sidebar.getByRole("link", { name: "Harvest questions" })).toBeVisible();
    await expect(page.getByRole("heading", { name: "Harvest questions" })).toBeVisible();
    await sidebar.getByRole("searchbox").fill("pear");
    await expect(sidebar.getByRole("link", { name: /Harvest questions/ })).toBeVisible();
    await sidebar.getByRole("searchbox").fill("");
    const download = page.waitForEvent("download");
    await sidebar.getByRole("button", { name: "Export Harvest questions as Markdown" }).click();
    const exported = await readFile((await (await download).path()) as string, "utf8");
    expect(exported).toContain("When does the apple harvest start");
    await screenshot(page, "chat-sidebar");
    await sidebar.getByRole("button", { name: "Delete Harvest questions" }).click();
    const dialog = page.getByRole("dialog", { name: "Delete conversation?" });
    await expect(dialog.getByRole("button", { name: "Cancel" })).toBeFocused();
    await dialog.getByRole("button", { name: "Delete conversation" }).click();
    await expect(sidebar.getByRole("link", { name: "Harvest questions" })).toHaveCount(0);
    await expect(page).toHaveURL(/\/chat$/);
  });

  await test.step("dark theme and phone width", async () => {
    await page.getByLabel("Theme").selectOption("dark");
    await page.goto("/projects");
    await expectAccessible(page, "projects page, dark");
    await screenshot(page, "projects-dark");
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto("/chat");
    await expect(page.getByLabel("Your question")).toBeVisible();
    await screenshot(page, "chat-phone");
    await page.getByLabel("Theme").selectOption("system");
  });

  await test.step("delete the project (with confirmation)", async () => {
    await page.setViewportSize({ width: 1440, height: 900 });
    await page.goto("/projects");
    const card = page.getByRole("listitem").filter({ hasText: projectName });
    await card.getByRole("button", { name: "Delete" }).click();
    await page
      .getByRole("dialog", { name: "Delete project?" })
      .getByRole("button", { name: "Delete project" })
      .click();
    await expect(page.getByRole("link", { name: projectName })).toHaveCount(0);
  });
});

test("an expired session sends the user to log in, then back where they were", async ({ page }) => {
  const email = `e2e-${unique()}@example.test`;
  await signUp(page, email);
  await page.getByRole("link", { name: "Projects" }).click();
  await page.getByLabel("Name").fill("Session test");
  await page.getByRole("button", { name: "Create project" }).click();
  await page.getByRole("link", { name: "Session test" }).click();
  const projectUrl = page.url();

  // An expired access token is refreshed without the user noticing.
  await page.evaluate(() => {
    const session = JSON.parse(localStorage.getItem("kt.session") ?? "{}");
    localStorage.setItem("kt.session", JSON.stringify({ ...session, access: "expired" }));
  });
  await page.reload();
  await expect(page.getByRole("heading", { name: "Session test" })).toBeVisible();

  // A refresh token that no longer works ends the session.
  await page.evaluate(() =>
    localStorage.setItem("kt.session", JSON.stringify({ access: "x", refresh: "revoked" })),
  );
  await page.getByRole("link", { name: "← Projects" }).click();
  await expect(page).toHaveURL(/\/login\?/);
  await expect(page.getByRole("status")).toContainText("session has ended");
  await page.getByLabel("E-mail").fill(email);
  await page.getByLabel("Password").fill("correct horse battery");
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page).toHaveURL(/\/projects$/);

  // Log out ends it for real.
  await page.goto(projectUrl);
  await page.getByRole("button", { name: "Log out" }).click();
  await expect(page).toHaveURL(/\/login/);

  // A forgotten password: the e-mailed link sets a new one.
  await page.getByRole("link", { name: "Forgot your password?" }).click();
  await page.getByLabel("E-mail").fill(email);
  await page.getByRole("button", { name: "Send the link" }).click();
  await expect(page.getByRole("status")).toContainText(
    "a link to set a new password is on its way",
  );
  const link = /https?:\/\/\S+\/reset-password\?token=\S+/.exec(await lastMail(email))?.[0];
  expect(link, "the reset link in the mail").toBeTruthy();
  await page.goto(link as string);
  await page.getByLabel("New password").fill("a brand new passphrase");
  await page.getByRole("button", { name: "Set the password" }).click();
  await expect(page.getByRole("status")).toContainText("Your new password is set");
  await page.getByLabel("E-mail").fill(email);
  await page.getByLabel("Password").fill("a brand new passphrase");
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page).toHaveURL(/\/chat/);
});

// The admin page: invitations (the link lets one person sign up, also when registration
// is invite-only), users with plan and usage (disable/enable), the registration mode and
// the documents that failed across all users.
import type { Page } from "@playwright/test";
import { ADMIN, expect, expectAccessible, screenshot, signUp, test, unique } from "./helpers";

async function logInAsAdmin(page: Page): Promise<void> {
  await page.goto("/login");
  await page.getByLabel("E-mail").fill(ADMIN.email);
  await page.getByLabel("Password").fill(ADMIN.password);
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page).toHaveURL(/\/chat/);
}

test("an administrator invites someone, who signs up with the link", async ({ page }) => {
  await logInAsAdmin(page);
  await page.getByRole("link", { name: "Admin" }).click();
  await page.getByLabel("E-mail address").fill("newcomer@larchvalley.test");
  await page.getByRole("button", { name: "Create invitation" }).click();
  const link = page.getByLabel("Sign-up link for newcomer@larchvalley.test");
  await expect(link).toHaveValue(/\/register\?invitation=/);
  await expectAccessible(page, "admin page");
  await screenshot(page, "admin");
  const url = await link.inputValue();

  await page.getByRole("button", { name: "Log out" }).click();
  await page.goto(url);
  await expect(page.getByRole("status")).toContainText("You were invited");
  await page.getByLabel("E-mail").fill("newcomer@larchvalley.test");
  await page.getByLabel("Password").fill("correct horse battery");
  await page.getByRole("button", { name: "Sign up" }).click();
  await expect(page).toHaveURL(/\/chat/);
  await expect(page.getByRole("link", { name: "Admin" })).toHaveCount(0);
  await page.goto("/admin");
  await expect(page.getByRole("alert")).toContainText("Only administrators");
});

test("an administrator finds a user, sees their usage and failed upload, disables and enables them", async ({
  page,
  browser,
}) => {
  const email = `e2e-managed-${unique()}@example.test`;
  const password = "correct horse battery";
  await test.step("someone signs up and uploads a damaged PDF", async () => {
    const context = await browser.newContext();
    const theirs = await context.newPage();
    await signUp(theirs, email, password);
    await theirs.getByRole("link", { name: "Projects" }).click();
    await theirs.getByLabel("Name").fill("Scans");
    await theirs.getByRole("button", { name: "Create project" }).click();
    await theirs.getByRole("link", { name: "Scans" }).click();
    await theirs.getByTestId("file-input").setInputFiles([
      {
        name: "damaged.pdf",
        mimeType: "application/pdf",
        buffer: Buffer.from("%PDF-1.4\nthis is not really a PDF\n%%EOF\n"),
      },
    ]);
    const row = theirs
      .getByRole("list", { name: "Documents" })
      .getByRole("listitem")
      .filter({ hasText: "damaged.pdf" });
    await expect(row.getByText("failed", { exact: true })).toBeVisible({ timeout: 60_000 });
    await context.close();
  });

  await test.step("the admin page lists them with plan and usage, and the failure", async () => {
    await logInAsAdmin(page);
    await page.getByRole("link", { name: "Admin" }).click();
    await expect(page.getByTestId("registration-mode")).toContainText("Open");
    await page.getByLabel("Search by e-mail").fill("e2e-managed");
    await page.getByRole("button", { name: "Search" }).click();
    const users = page.getByRole("table", { name: "Users" });
    await expect(users.getByRole("row")).toHaveCount(2); // the header and them
    const row = users.getByRole("row").filter({ hasText: email });
    await expect(row).toContainText("free");
    await expect(row).toContainText("0 of 100");
    await expect(row).toContainText("Active");
    const failed = page.getByRole("table", { name: "Documents that failed" });
    const failure = failed.getByRole("row").filter({ hasText: "damaged.pdf" });
    await expect(failure).toContainText(email);
    await expect(failure).toContainText("Scans");
    await expectAccessible(page, "admin page with users and failed documents");
    await screenshot(page, "admin-users");

    await row.getByRole("button", { name: `Disable ${email}` }).click();
    await page
      .getByRole("dialog", { name: `Disable ${email}?` })
      .getByRole("button", { name: "Disable" })
      .click();
    await expect(row).toContainText("Disabled");
  });

  await test.step("a disabled account cannot log in; enabled again, it can", async () => {
    const context = await browser.newContext();
    const theirs = await context.newPage();
    await theirs.goto("/login");
    await theirs.getByLabel("E-mail").fill(email);
    await theirs.getByLabel("Password").fill(password);
    await theirs.getByRole("button", { name: "Log in" }).click();
    await expect(theirs.getByRole("alert")).toBeVisible();

    const row = page
      .getByRole("table", { name: "Users" })
      .getByRole("row")
      .filter({ hasText: email });
    await row.getByRole("button", { name: `Enable ${email}` }).click();
    await expect(row).toContainText("Active");
    await theirs.getByRole("button", { name: "Log in" }).click();
    await expect(theirs).toHaveURL(/\/chat/);
    await context.close();
  });

  await test.step("an admin cannot disable themselves: no button on their own row", async () => {
    await page.getByLabel("Search by e-mail").fill(ADMIN.email);
    await page.getByRole("button", { name: "Search" }).click();
    const own = page
      .getByRole("table", { name: "Users" })
      .getByRole("row")
      .filter({ hasText: ADMIN.email });
    await expect(own).toContainText("admin");
    await expect(own.getByRole("button")).toHaveCount(0);
  });
});

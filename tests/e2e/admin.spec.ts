// The admin page offers what the API has for administrators: invitations. The link it
// makes lets one person sign up (also when registration is invite-only).
import { ADMIN, expect, expectAccessible, screenshot, test } from "./helpers";

test("an administrator invites someone, who signs up with the link", async ({ page }) => {
  await page.goto("/login");
  await page.getByLabel("E-mail").fill(ADMIN.email);
  await page.getByLabel("Password").fill(ADMIN.password);
  await page.getByRole("button", { name: "Log in" }).click();
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

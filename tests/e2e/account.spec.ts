// The account page beyond billing: the chart of messages per day and the password change.
import { expect, expectAccessible, screenshot, signUp, test, unique } from "./helpers";

test("the account page charts today's messages and changes the password", async ({ page }) => {
  const email = `e2e-account-${unique()}@example.test`;
  await signUp(page, email);

  await test.step("one question, then the chart shows it on today's bar", async () => {
    const box = page.getByLabel("Your question");
    await box.fill("Is anybody there?");
    await box.press("Enter");
    await expect(page.getByRole("button", { name: "Send" })).toBeVisible({ timeout: 30_000 });
    await page.getByRole("link", { name: "Account", exact: true }).click();
    const chart = page.getByRole("img", { name: /Messages per day, last 30 days: 1 in all/ });
    await expect(chart).toBeVisible();
    await expect(chart.locator("rect[data-messages='1']")).toHaveCount(1);
    await expect(chart.locator("rect").last()).toHaveAttribute("data-messages", "1");
    await expect(page.getByRole("meter", { name: /Messages: 1 of/ })).toBeVisible();
  });

  await test.step("a wrong current password is refused, the right one changes it", async () => {
    const form = page.getByRole("form", { name: "Change password" });
    await form.getByLabel("Current password").fill("not my password");
    await form.getByLabel("New password", { exact: true }).fill("a brand new password");
    await form.getByLabel("New password again").fill("a brand new password");
    await form.getByRole("button", { name: "Change password" }).click();
    await expect(form.getByRole("alert")).toBeVisible();
    await form.getByLabel("Current password").fill("correct horse battery");
    await form.getByRole("button", { name: "Change password" }).click();
    await expect(form.getByRole("status")).toContainText("Password changed");
    await expectAccessible(page, "account page with chart and password form");
    await screenshot(page, "account-usage");
    // Still logged in here: the new token pair replaced the old one.
    await page.reload();
    await expect(page.getByTestId("plan-name")).toHaveText("Free");
  });

  await test.step("the new password logs in, the old one does not", async () => {
    await page.getByRole("button", { name: "Log out" }).click();
    await page.goto("/login");
    await page.getByLabel("E-mail").fill(email);
    await page.getByLabel("Password").fill("correct horse battery");
    await page.getByRole("button", { name: "Log in" }).click();
    await expect(page.getByRole("alert")).toBeVisible();
    await page.getByLabel("Password").fill("a brand new password");
    await page.getByRole("button", { name: "Log in" }).click();
    await expect(page).toHaveURL(/\/chat/);
  });
});

// Plans, Stripe Checkout (through the Stripe stand-in), the account page, and the upgrade
// prompt when a plan limit answers 402.
import { expect, expectAccessible, screenshot, standInCheckoutPage, test, unique } from "./helpers";

test("pricing → checkout → account shows Starter; a limit offers the upgrade", async ({ page }) => {
  await test.step("the pricing page, logged out", async () => {
    await page.goto("/pricing");
    await expect(page.getByRole("heading", { name: "Plans" })).toBeVisible();
    for (const name of ["Free", "Starter", "Pro", "Enterprise"]) {
      await expect(page.getByRole("heading", { name, exact: true })).toBeVisible();
    }
    await expect(page.getByRole("table")).toContainText("Messages per month");
    await expectAccessible(page, "pricing page");
    await screenshot(page, "pricing");
  });

  await test.step("sign up from the pricing page and come back to it", async () => {
    await page.getByRole("link", { name: "Get started" }).first().click();
    await expect(page).toHaveURL(/\/register\?next=%2Fpricing|\/register\?next=\/pricing/);
    await page.getByLabel("E-mail").fill(`e2e-${unique()}@example.test`);
    await page.getByLabel("Password").fill("correct horse battery");
    await page.getByRole("button", { name: "Sign up" }).click();
    await expect(page).toHaveURL(/\/pricing$/);
    await expect(page.getByRole("button", { name: "Your plan" })).toBeVisible();
  });

  await test.step("the Free plan's project limit: the upgrade prompt", async () => {
    await page.getByRole("link", { name: "Projects" }).click();
    for (const n of [1, 2, 3, 4]) {
      await page.getByLabel("Name").fill(`Project ${n}`);
      await page.getByRole("button", { name: "Create project" }).click();
      if (n < 4) await expect(page.getByRole("link", { name: `Project ${n}` })).toBeVisible();
    }
    const prompt = page.getByRole("dialog", { name: "You have reached a limit of your plan" });
    await expect(prompt).toContainText("3 of 3");
    await expectAccessible(page, "upgrade prompt");
    await screenshot(page, "upgrade-prompt");
    await prompt.getByRole("link", { name: "See plans" }).click();
    await expect(page).toHaveURL(/\/pricing$/);
  });

  await test.step("Starter through Stripe Checkout", async () => {
    await standInCheckoutPage(page);
    await page.getByRole("button", { name: "Get started with Starter" }).click();
    await expect(page.getByRole("heading", { name: "Stripe Checkout (stand-in)" })).toBeVisible();
    await page.getByRole("link", { name: "Pay" }).click();
    await expect(page).toHaveURL(/\/checkout\/success/);
    await expect(page.getByRole("heading", { name: "Welcome to Starter" })).toBeVisible();
  });

  await test.step("the account page shows Starter, its usage and the invoice", async () => {
    await page.getByRole("link", { name: "Your account" }).click();
    await expect(page.getByTestId("plan-name")).toHaveText("Starter");
    await expect(page.getByText(/Renews on/)).toBeVisible();
    await expect(page.getByRole("meter", { name: /Projects: 3 of 10/ })).toBeVisible();
    await expect(page.getByRole("table")).toContainText("$49.00");
    await expectAccessible(page, "account page");
    await screenshot(page, "account");
  });

  await test.step("cancel at the end of the period", async () => {
    await page.getByRole("button", { name: "Cancel subscription" }).click();
    await page
      .getByRole("dialog", { name: "Cancel your subscription?" })
      .getByRole("button", { name: "Cancel subscription" })
      .click();
    await expect(page.getByText(/Cancelled: ends on/)).toBeVisible();
    await expect(page.getByTestId("plan-name")).toHaveText("Starter"); // until the period ends
  });

  await test.step("the fourth project now fits", async () => {
    await page.getByRole("link", { name: "Projects" }).click();
    await page.getByLabel("Name").fill("Project 4");
    await page.getByRole("button", { name: "Create project" }).click();
    await expect(page.getByRole("link", { name: "Project 4" })).toBeVisible();
  });
});

// Shared by the browser tests: a PDF made from text, the axe scan, named screenshots,
// and the switch that makes the model stand-in fail once.
import path from "node:path";
import AxeBuilder from "@axe-core/playwright";
import { test as base, expect, type Page } from "@playwright/test";

/** Playwright's test, failing any test whose page reports a Content-Security-Policy
 * violation (vite preview sends the production policy: see playwright.config.ts). */
export const test = base.extend<{ cspViolations: undefined }>({
  cspViolations: [
    async ({ page }, use) => {
      const violations: string[] = [];
      page.on("console", (message) => {
        if (/Content Security Policy/i.test(message.text())) violations.push(message.text());
      });
      await use(undefined);
      expect(violations, "Content-Security-Policy violations").toEqual([]);
    },
    { auto: true },
  ],
});
export { expect };

const SCREENSHOTS = path.join(import.meta.dirname, "output", "screenshots");
const CONTROL = `http://127.0.0.1:${process.env.E2E_CONTROL_PORT ?? "8766"}`;

/** A one-page PDF (Helvetica text, one line per string) built byte by byte. */
export function makePdf(lines: string[]): Buffer {
  const pdfString = (text: string) => text.replace(/[\\()]/g, (c) => `\\${c}`);
  const stream = `BT /F1 12 Tf 16 TL 72 740 Td ${lines.map((l) => `(${pdfString(l)}) '`).join(" ")} ET`;
  const objects = [
    "<< /Type /Catalog /Pages 2 0 R >>",
    "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
    "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    `<< /Length ${stream.length} >>\nstream\n${stream}\nendstream`,
  ];
  let pdf = "%PDF-1.4\n";
  const offsets: number[] = [];
  objects.forEach((body, i) => {
    offsets.push(pdf.length);
    pdf += `${i + 1} 0 obj\n${body}\nendobj\n`;
  });
  const xref = pdf.length;
  pdf += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const offset of offsets) pdf += `${String(offset).padStart(10, "0")} 00000 n \n`;
  pdf += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(pdf, "latin1");
}

/** No serious or critical axe violations on the page as it is now. */
export async function expectAccessible(page: Page, name: string): Promise<void> {
  const results = await new AxeBuilder({ page }).analyze();
  const bad = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  const report = bad.map(
    (v) =>
      `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`,
  );
  expect(report, `accessibility of ${name}`).toEqual([]);
}

export async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`) });
}

/** The next answer from the model stand-in fails this way (see stack.py). */
export async function scriptModel(script: Record<string, unknown>): Promise<void> {
  const response = await fetch(`${CONTROL}/script`, {
    method: "POST",
    body: JSON.stringify(script),
  });
  expect(response.status).toBe(204);
}

/** Stripe's Checkout page, played by a small page whose "Pay" goes through stack.py
 * (which completes the checkout at the stand-in, delivers the signed webhooks and
 * redirects back to the app as Stripe does). */
export async function standInCheckoutPage(page: Page): Promise<void> {
  await page.route("**/checkout/pay/*", async (route) => {
    const sessionId = new URL(route.request().url()).pathname.split("/").pop();
    await route.fulfill({
      contentType: "text/html",
      body: `<!doctype html><html lang="en"><title>Checkout (Stripe stand-in)</title>
        <main><h1>Stripe Checkout (stand-in)</h1><a href="${CONTROL}/pay/${sessionId}">Pay</a></main></html>`,
    });
  });
}

/** The text of the last e-mail the app sent to `to` (stack.py's SMTP server), with
 * quoted-printable soft breaks and escapes undone. */
export async function lastMail(to: string): Promise<string> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const messages = (await (await fetch(`${CONTROL}/mail`)).json()) as {
      to: string;
      text: string;
    }[];
    const mail = messages.filter((m) => m.to === to).at(-1);
    if (mail) {
      return mail.text
        .replace(/=\r?\n/g, "")
        .replace(/=([0-9A-F]{2})/g, (_, hex) => String.fromCharCode(Number.parseInt(hex, 16)));
    }
    await new Promise((resolve) => setTimeout(resolve, 200)); // the mail leaves after the answer
  }
  throw new Error(`no mail to ${to}`);
}

/** The administrator stack.py creates (the config passes it on). */
export const ADMIN = { email: "admin@larchvalley.test", password: "admin-password-e2e" };

export const unique = () => `${Date.now()}-${Math.floor(Math.random() * 1e6)}`;

/** Types a question in the chat box and sends it (Enter). */
export async function ask(page: Page, question: string): Promise<void> {
  const box = page.getByLabel("Your question");
  await box.fill(question);
  await box.press("Enter");
}

export async function signUp(
  page: Page,
  email: string,
  password = "correct horse battery",
): Promise<void> {
  await page.goto("/register");
  await page.getByLabel("E-mail").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign up" }).click();
  await expect(page).toHaveURL(/\/chat/);
}

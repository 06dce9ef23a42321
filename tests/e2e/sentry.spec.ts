// Browser errors reach Sentry (stack.py's stand-in is the DSN /api/client-config hands
// out) with release and environment, and without what people wrote or who they are.
import { expect, signUp, test, unique } from "./helpers";

const CONTROL = `http://127.0.0.1:${process.env.E2E_CONTROL_PORT ?? "8766"}`;
const sentEvents = async () => (await (await fetch(`${CONTROL}/sentry`)).json()) as string[];
const JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJlMmUifQ.c2lnbmF0dXJlLWUyZQ";

test("an error in the browser reaches Sentry without personal data", async ({ page }) => {
  const email = `e2e-sentry-${unique()}@example.test`;
  await signUp(page, email);
  // A draft in the composer and a token in the address: neither may be sent.
  await page.goto("/chat?token=secret-e2e-token&project=none");
  await page.getByLabel("Your question").fill("my private draft about salaries");
  const before = (await sentEvents()).length;
  const marker = `e2e-boom-${unique()}`;
  // The SDK loads after the page; throw until one report arrives (the first may be early).
  await expect
    .poll(
      async () => {
        await page.evaluate(
          ([text, address, token]) =>
            setTimeout(() => {
              throw new Error(`${text} for ${address} with ${token}`);
            }),
          [marker, email, JWT],
        );
        return (await sentEvents()).slice(before).filter((e) => e.includes(marker)).length;
      },
      { timeout: 30_000 },
    )
    .toBeGreaterThan(0);
  const [raw] = (await sentEvents()).slice(before).filter((e) => e.includes(marker));
  const event = JSON.parse(raw);
  expect(event.release).toBe("knowledgetree@e2e-release");
  expect(event.environment).toBe("development");
  expect(event.exception.values[0].value).toContain(marker);
  for (const secret of [email, JWT, "secret-e2e-token", "my private draft", "access_token"]) {
    expect(raw, `the event contains ${secret}`).not.toContain(secret);
  }
  expect(event.request?.url).toContain("/chat");
});

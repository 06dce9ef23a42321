import type { ErrorEvent } from "@sentry/react";
import { FILTERED, scrubBreadcrumb, scrubEvent, scrubUrl } from "./scrub";

const JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";

function leaks(value: unknown): string[] {
  const text = JSON.stringify(value);
  return ["ann@example.org", JWT, "secret-reset", "What is our refund policy", "s3cret"].filter(
    (needle) => text.includes(needle),
  );
}

test("an event keeps the error but loses text, addresses and tokens", () => {
  const event: ErrorEvent = {
    type: undefined,
    message: "Failed for ann@example.org",
    request: {
      url: "https://kt.example/reset-password?token=secret-reset&next=%2Fchat",
      data: { message: "What is our refund policy", password: "s3cret" },
      headers: { Authorization: `Bearer ${JWT}`, "User-Agent": "x" },
      cookies: { session: "s3cret" },
      query_string: "token=secret-reset",
    },
    user: { id: "u1", email: "ann@example.org", ip_address: "10.0.0.1" },
    exception: {
      values: [
        {
          type: "TypeError",
          value: `Cannot read ${JWT} of ann@example.org`,
          stacktrace: {
            frames: [
              {
                filename: "https://kt.example/assets/index.js?token=secret-reset",
                vars: { text: "What is our refund policy" },
              },
            ],
          },
        },
      ],
    },
    breadcrumbs: [
      { category: "console", message: "What is our refund policy" },
      {
        category: "fetch",
        data: { url: "/api/auth/refresh?refresh_token=secret-reset", method: "POST" },
      },
      { category: "navigation", data: { from: "/login", to: "/register?invitation=secret-reset" } },
    ],
    extra: { body: { content: "What is our refund policy" }, nested: [{ email: "x@y.org" }] },
    contexts: { page: { refresh_token: JWT, count: 3 } },
  };
  const scrubbed = scrubEvent(event);
  expect(leaks(scrubbed)).toEqual([]);
  expect(scrubbed.exception?.values?.[0].type).toBe("TypeError");
  expect(scrubbed.exception?.values?.[0].value).toBe(`Cannot read ${FILTERED} of ${FILTERED}`);
  expect(scrubbed.request).toEqual({
    url: `https://kt.example/reset-password?token=${FILTERED}&next=%2Fchat`,
  });
  expect(scrubbed.user).toEqual({ id: "u1" });
  expect(scrubbed.breadcrumbs?.map((crumb) => crumb.category)).toEqual(["fetch", "navigation"]);
  expect(scrubbed.breadcrumbs?.[0].data?.method).toBe("POST");
  expect(scrubbed.contexts?.page).toEqual({ refresh_token: FILTERED, count: 3 });
});

test("URLs keep their path and harmless parameters", () => {
  expect(scrubUrl("/chat/42?project=7")).toBe("/chat/42?project=7");
  expect(scrubUrl("/register?invitation=abc&x=1#frag")).toBe(
    `/register?invitation=${FILTERED}&x=1`,
  );
  expect(scrubUrl("/u/ann@example.org")).toBe(`/u/${FILTERED}`);
});

test("console breadcrumbs are dropped, others scrubbed", () => {
  expect(scrubBreadcrumb({ category: "console", message: "hi" })).toBeNull();
  expect(scrubBreadcrumb({ category: "ui.click", message: "button for ann@example.org" })).toEqual({
    category: "ui.click",
    message: `button for ${FILTERED}`,
    data: undefined,
  });
});

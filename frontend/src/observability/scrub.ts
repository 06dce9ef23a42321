// What the browser sends to Sentry: errors and their context, never what people wrote or
// who they are. Every event, transaction and breadcrumb passes through here (beforeSend,
// beforeSendTransaction, beforeBreadcrumb in sentry.ts); kept free of Sentry imports so
// the main bundle and the unit tests do not pull the SDK in.
import type { Breadcrumb, Event } from "@sentry/react";

export const FILTERED = "[Filtered]";

// Field names whose values are personal or secret wherever they appear: the API's token
// and password fields, chat text (message, content, the artifact request), e-mail.
const SECRET_KEY =
  /^(authorization|cookie|set-cookie|password|current_password|new_password|token|access_token|refresh_token|invitation|email|e-mail|message|content|text|request|body|data|query|q|secret|api_key|key|code|session_id)$/i;
// Query parameters that carry a credential or an address (reset and invitation links).
const SECRET_PARAM =
  /^(token|access_token|refresh_token|invitation|email|code|key|secret|session_id|q)$/i;
const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/g;
const JWT = /\beyJ[\w-]+\.[\w-]+\.[\w-]+/g;
const LOOKS_LIKE_URL = /^(https?:\/\/|\/)\S*\?/;
const BEARER = /\bBearer\s+[\w.~+/-]+=*/gi;

/** A string with e-mail addresses and tokens blanked. */
export function scrubText(text: string): string {
  return text.replace(JWT, FILTERED).replace(BEARER, `Bearer ${FILTERED}`).replace(EMAIL, FILTERED);
}

/** A URL with the values of credential-carrying query parameters (and its fragment) blanked. */
export function scrubUrl(url: string): string {
  const hashless = url.split("#")[0];
  const at = hashless.indexOf("?");
  if (at < 0) return scrubText(hashless);
  const params = hashless
    .slice(at + 1)
    .split("&")
    .map((pair) => {
      const [name] = pair.split("=", 1);
      return SECRET_PARAM.test(decodeURIComponent(name)) ? `${name}=${FILTERED}` : pair;
    });
  return scrubText(`${hashless.slice(0, at)}?${params.join("&")}`);
}

/** A copy of ``value`` with secret fields blanked and strings scrubbed, at any depth. */
export function scrubValue(value: unknown, depth = 0): unknown {
  if (typeof value === "string")
    return LOOKS_LIKE_URL.test(value) ? scrubUrl(value) : scrubText(value);
  if (depth > 8 || value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((item) => scrubValue(item, depth + 1));
  const copy: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    if (SECRET_KEY.test(key) && item !== null && item !== undefined) copy[key] = FILTERED;
    else copy[key] = scrubValue(item, depth + 1);
  }
  return copy;
}

/** The event as it may leave the browser: no request body, cookies, headers or query
 * string; URLs without credentials; no user but an id; text scrubbed everywhere. */
export function scrubEvent<T extends Event>(event: T): T {
  const scrubbed: T = { ...event };
  if (event.request) {
    scrubbed.request = { url: event.request.url ? scrubUrl(event.request.url) : undefined };
  }
  if (event.user) scrubbed.user = event.user.id ? { id: event.user.id } : undefined;
  if (event.message) scrubbed.message = scrubText(event.message);
  if (event.transaction) scrubbed.transaction = scrubUrl(event.transaction);
  if (event.exception?.values) {
    scrubbed.exception = {
      ...event.exception,
      values: event.exception.values.map((exception) => ({
        ...exception,
        value: exception.value === undefined ? undefined : scrubText(exception.value),
        stacktrace: exception.stacktrace && {
          ...exception.stacktrace,
          frames: exception.stacktrace.frames?.map((frame) => ({
            ...frame,
            filename: frame.filename && scrubUrl(frame.filename),
            abs_path: frame.abs_path && scrubUrl(frame.abs_path),
            vars: undefined,
          })),
        },
      })),
    };
  }
  if (event.breadcrumbs) {
    scrubbed.breadcrumbs = event.breadcrumbs
      .map((crumb) => scrubBreadcrumb(crumb))
      .filter((crumb): crumb is Breadcrumb => crumb !== null);
  }
  for (const key of ["extra", "contexts", "tags"] as const) {
    if (event[key]) (scrubbed as Record<string, unknown>)[key] = scrubValue(event[key]);
  }
  if (event.spans) {
    scrubbed.spans = event.spans.map((span) => ({
      ...span,
      description: span.description && scrubUrl(span.description),
      data: scrubValue(span.data) as typeof span.data,
    }));
  }
  return scrubbed;
}

/** Console breadcrumbs are dropped (they may print anything); the rest keep their kind
 * and scrubbed URLs and text. */
export function scrubBreadcrumb(crumb: Breadcrumb): Breadcrumb | null {
  if (crumb.category === "console") return null;
  return {
    ...crumb,
    message: crumb.message && scrubText(crumb.message),
    data: crumb.data && (scrubValue(crumb.data) as Breadcrumb["data"]),
  };
}

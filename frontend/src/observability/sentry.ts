// Browser error reporting, off unless the server names a DSN (GET /api/client-config:
// SENTRY_FRONTEND_DSN). The SDK is imported only then, so an installation without Sentry
// downloads none of it. Production's Content-Security-Policy must allow the DSN's origin
// in connect-src (roles/nginx), or the browser refuses to send the events.
import type { components } from "../api/schema";
import { scrubBreadcrumb, scrubEvent } from "./scrub";

type ClientConfig = components["schemas"]["ClientConfig"];

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

export async function startErrorReporting(): Promise<boolean> {
  let config: ClientConfig;
  try {
    // Plain fetch, not the session's: nothing personal, works before login.
    const response = await fetch("/api/client-config");
    if (!response.ok) return false;
    config = (await response.json()) as ClientConfig;
  } catch {
    return false;
  }
  if (!config.sentry_dsn) return false;
  const Sentry = await import("@sentry/react");
  const tracing = config.sentry_traces_sample_rate > 0;
  Sentry.init({
    dsn: config.sentry_dsn,
    environment: config.environment,
    release: `knowledgetree@${config.release}`, // the backend's name for the same release
    // Collect none of this in the first place; the scrubber below is the second line.
    dataCollection: {
      userInfo: false,
      cookies: false,
      httpHeaders: false,
      httpBodies: [],
      urlQueryParams: false,
    },
    tracesSampleRate: config.sentry_traces_sample_rate,
    integrations: (defaults) => [
      ...defaults,
      ...(tracing ? [Sentry.browserTracingIntegration()] : []),
    ],
    // Trace headers only to our own API (never to Stripe or the DSN's host).
    tracePropagationTargets: [
      /^\/api\//,
      new RegExp(`^${escapeRegExp(window.location.origin)}/api/`),
    ],
    beforeSend: (event) => scrubEvent(event),
    beforeSendTransaction: (event) => scrubEvent(event),
    beforeBreadcrumb: (crumb) => scrubBreadcrumb(crumb),
  });
  return true;
}

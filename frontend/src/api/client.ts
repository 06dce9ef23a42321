// The typed API client: paths, bodies and answers come from schema.d.ts, which
// openapi-typescript generates from the backend's OpenAPI schema (`npm run gen:api`).
import createClient from "openapi-fetch";
import type { components, paths } from "./schema";
import { authFetch } from "./session";

export const api = createClient<paths>({ baseUrl: "", fetch: authFetch });

export type Schemas = components["schemas"];
export type Project = Schemas["ProjectRead"];
export type DocumentInfo = Schemas["DocumentRead"];
export type UploadedDocument = Schemas["DocumentUploadRead"];
export type ConversationSummary = Schemas["ConversationSummary"];
export type Conversation = Schemas["ConversationRead"];
export type Message = Schemas["MessageRead"];
export type Source = Schemas["SourceRead"];
export type ChatRequest = Schemas["ChatRequest"];
export type Artifact = Schemas["ArtifactRead"];
export type ArtifactSummary = Schemas["ArtifactSummary"];
export type ArtifactVersion = Schemas["ArtifactVersionRead"];
export type User = Schemas["UserRead"];

/** A sentence for a person from an error body: FastAPI's `detail` (a string, an object
 * with `message`, or a 422 list of field errors). */
export function errorMessage(error: unknown, fallback = "Something went wrong"): string {
  if (!error || typeof error !== "object") return fallback;
  const detail = (error as { detail?: unknown }).detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((item: { loc?: unknown[]; msg?: string }) => {
        const field = item.loc?.filter((part) => part !== "body").join(".");
        return field ? `${field}: ${item.msg}` : item.msg;
      })
      .join("; ");
  }
  if (detail && typeof detail === "object" && "message" in detail) {
    return String((detail as { message: unknown }).message);
  }
  return fallback;
}

/** Throw the server's reason when a call failed; return its data otherwise. */
export function unwrap<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (result.error !== undefined || !result.response.ok) {
    throw new Error(
      errorMessage(result.error, `${result.response.status} ${result.response.statusText}`),
    );
  }
  return result.data as T;
}

/** Download a file the API serves with Content-Disposition (export endpoints). */
export async function download(url: string, fallbackName: string): Promise<void> {
  const response = await authFetch(url);
  if (!response.ok) throw new Error(errorMessage(await response.json().catch(() => null)));
  const disposition = response.headers.get("Content-Disposition") ?? "";
  const name = /filename="([^"]+)"/.exec(disposition)?.[1] ?? fallbackName;
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

export type Plan = Schemas["PlanRead"];
export type Subscription = Schemas["SubscriptionRead"];
export type Account = Schemas["AccountRead"];
export type Invoice = Schemas["InvoiceRead"];

export function formatMoney(cents: number, currency = "usd"): string {
  return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(cents / 100);
}

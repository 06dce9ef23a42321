import { lazy, Suspense } from "react";
import type { MarkdownProps } from "./Markdown";

const Markdown = lazy(() => import("./Markdown"));

/** Plain text until the Markdown bundle has loaded (first answer only), then Markdown. */
export function LazyMarkdown(props: MarkdownProps) {
  return (
    <Suspense fallback={<div className="plain-text">{props.text}</div>}>
      <Markdown {...props} />
    </Suspense>
  );
}

// Markdown with GFM tables and highlighted code. This module (react-markdown, remark-gfm,
// rehype-highlight) is most of the JavaScript, so it is loaded lazily: see LazyMarkdown.
import { Children, isValidElement, type ReactNode } from "react";
import ReactMarkdown from "react-markdown";
import rehypeHighlight from "rehype-highlight";
import remarkGfm from "remark-gfm";
import { CopyButton } from "./CopyButton";

export type MarkdownProps = { text: string; onCite?: (n: number) => void };

/** "[3]" (not a link already) → a link the `a` renderer turns into a citation button. */
export function linkCitations(text: string): string {
  return text.replace(/\[(\d{1,3})\](?![(:[])/g, "[[$1]](#cite-$1)");
}

function textOf(node: ReactNode): string {
  if (typeof node === "string" || typeof node === "number") return String(node);
  if (Array.isArray(node)) return node.map(textOf).join("");
  if (isValidElement(node)) return textOf((node.props as { children?: ReactNode }).children);
  return "";
}

export default function Markdown({ text, onCite }: MarkdownProps) {
  return (
    <ReactMarkdown
      remarkPlugins={[remarkGfm]}
      rehypePlugins={[[rehypeHighlight, { detect: false, ignoreMissing: true }]]}
      components={{
        a({ href, children }) {
          const cite = href?.match(/^#cite-(\d+)$/);
          if (cite && onCite) {
            const n = Number(cite[1]);
            return (
              <button
                type="button"
                className="citation"
                onClick={() => onCite(n)}
                aria-label={`Source ${n}`}
              >
                {n}
              </button>
            );
          }
          return (
            <a href={href} target="_blank" rel="noreferrer">
              {children}
            </a>
          );
        },
        pre({ children }) {
          return (
            <div className="code-block">
              <CopyButton text={() => textOf(Children.toArray(children))} label="Copy code" />
              <pre>{children}</pre>
            </div>
          );
        },
        table({ children }) {
          return (
            <div className="table-scroll">
              <table>{children}</table>
            </div>
          );
        },
      }}
    >
      {onCite ? linkCitations(text) : text}
    </ReactMarkdown>
  );
}

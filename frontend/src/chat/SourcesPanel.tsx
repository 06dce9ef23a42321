import { useEffect, useRef } from "react";
import type { StreamSource } from "./sse";

type Props = {
  sources: (StreamSource & { cited?: boolean })[];
  selected: number | null;
};

/** The passages an answer was given; the selected one ([n] clicked) is scrolled to. */
export function SourcesPanel({ sources, selected }: Props) {
  const list = useRef<HTMLOListElement>(null);
  useEffect(() => {
    if (selected === null) return;
    const item = list.current?.querySelector<HTMLElement>(`[data-source="${selected}"]`);
    item?.scrollIntoView({ block: "nearest", behavior: "smooth" });
    item?.focus();
  }, [selected]);
  if (sources.length === 0) {
    return (
      <p className="empty">
        No sources yet. Ask a question in a project, or click a citation like [1].
      </p>
    );
  }
  return (
    <ol className="sources" ref={list} aria-label="Sources">
      {sources.map((source) => (
        <li
          key={source.number}
          data-source={source.number}
          tabIndex={-1}
          className={`source${source.number === selected ? " selected" : ""}`}
        >
          <div className="source-head">
            <span className="source-number">[{source.number}]</span>
            <span className="source-doc">{source.document_name}</span>
          </div>
          <div className="hint">
            {source.page != null && <span>page {source.page}</span>}
            {source.heading && <span> · {source.heading}</span>}
            {source.score != null && <span> · similarity {source.score.toFixed(2)}</span>}
            {source.cited === false && <span> · not cited</span>}
          </div>
          <blockquote>{source.text}</blockquote>
        </li>
      ))}
    </ol>
  );
}

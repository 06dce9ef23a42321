"""Cut parsed sections into overlapping, sentence-aware chunks that carry their context.

LlamaIndex's ``SentenceSplitter`` cuts each section on its own (paragraphs, then
sentences, then clauses), so a chunk never spans two PDF pages or two headings and keeps
its ``page``/``heading`` for citations. Sizes are the embedding model's word pieces. A
chunk's context (document title and heading path) is embedded and keyword-indexed with
it but not shown to users; docs/ARCHITECTURE.md ("Ranking") has the measurements.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import PurePath

from llama_index.core.node_parser import SentenceSplitter

from app.services.parsing import HEADING_SEPARATOR, Section


@dataclass(frozen=True)
class Chunk:
    text: str
    index: int  # position in the document, from 0
    page: int | None
    heading: str | None
    title: str | None = None  # the document's title

    @property
    def context(self) -> str:
        """Title and heading path ("git-push > OPTIONS"): where the passage stands.

        They often name what the passage itself only implies ("The waggle dance" above
        "she tells her sisters where the food is"; "git-fetch" above "Fetch all remotes.").
        """
        return HEADING_SEPARATOR.join(part for part in (self.title, self.heading) if part)

    @property
    def embedding_text(self) -> str:
        """What the model embeds and the keyword index reads: the context, then the text."""
        return f"{self.context}\n\n{self.text}" if self.context else self.text


def document_title(filename: str) -> str:
    """A document's title as chunks carry it: its file name without the extension."""
    return PurePath(filename).stem or filename


def make_splitter(
    chunk_size: int, chunk_overlap: int, tokenizer: Callable[[str], list]
) -> SentenceSplitter:
    # An overlap of half a chunk or more would make the splitter crawl forward.
    overlap = min(chunk_overlap, chunk_size // 2)
    return SentenceSplitter(
        chunk_size=chunk_size,
        chunk_overlap=overlap,
        tokenizer=tokenizer,
        paragraph_separator="\n\n",  # what the parsers put between paragraphs
    )


def chunk_sections(
    sections: Iterable[Section], splitter: SentenceSplitter, title: str | None = None
) -> list[Chunk]:
    """Chunks of every section, numbered through the document."""
    chunks: list[Chunk] = []
    for section in sections:
        context = Chunk("", 0, None, section.heading, title).context
        # Leave room for the context in each chunk: it is embedded with the text.
        pieces = (
            splitter.split_text_metadata_aware(section.text, context)
            if context
            else splitter.split_text(section.text)
        )
        for text in pieces:
            if text := text.strip():
                chunks.append(
                    Chunk(
                        text=text,
                        index=len(chunks),
                        page=section.page,
                        heading=section.heading,
                        title=title,
                    )
                )
    return chunks

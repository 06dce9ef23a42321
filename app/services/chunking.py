"""Cut parsed sections into overlapping, sentence-aware chunks.

LlamaIndex's ``SentenceSplitter`` does the cutting (paragraphs first, then sentences,
then clauses; never mid-word unless a single sentence is longer than a chunk). It runs
per section, so a chunk never spans two PDF pages or two headings and keeps that
``page``/``heading`` for citations. The heading path is embedded together with the
chunk's text (``Chunk.embedding_text``), so the splitter leaves room for it.

Sizes are in the embedding model's own word-piece tokens (not tiktoken's), so
``CHUNK_SIZE`` means what the model will actually read; it is capped at the model's
window (256 word pieces for all-MiniLM-L6-v2; see ``embeddings.effective_chunk_size``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from llama_index.core.node_parser import SentenceSplitter

from app.services.parsing import Section


@dataclass(frozen=True)
class Chunk:
    text: str
    index: int  # position in the document, from 0
    page: int | None
    heading: str | None

    @property
    def embedding_text(self) -> str:
        """What the model embeds: the heading path, then the text.

        The heading often names the topic that the passage itself only implies
        ("The waggle dance" above "she tells her sisters where the food is").
        """
        return f"{self.heading}\n\n{self.text}" if self.heading else self.text


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


def chunk_sections(sections: Iterable[Section], splitter: SentenceSplitter) -> list[Chunk]:
    """Chunks of every section, numbered through the document."""
    chunks: list[Chunk] = []
    for section in sections:
        # With a heading, leave room for it in each chunk (it is embedded with the text).
        pieces = (
            splitter.split_text_metadata_aware(section.text, section.heading)
            if section.heading
            else splitter.split_text(section.text)
        )
        for text in pieces:
            if text := text.strip():
                chunks.append(
                    Chunk(text=text, index=len(chunks), page=section.page, heading=section.heading)
                )
    return chunks

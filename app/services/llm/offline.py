"""Offline mode: answers built from the best passages, without a language model.

Used when no ANTHROPIC_API_KEY is configured (the demo, people trying the app).
It is a real answer path, not a test double: for each retrieved passage it quotes
the sentences that share the most words with the question, cites the passage
as [n] exactly like Claude is asked to, and streams the result through the same
events. The first line says plainly that no model wrote it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from app.services.llm.base import LLMEvent, ModelRequest, TextDelta, Usage
from app.services.passages import Passage
from app.services.prompt import estimate_tokens

OFFLINE_LABEL = (
    "*Offline mode: no language model is configured (ANTHROPIC_API_KEY is not set), "
    "so this answer quotes the passages of your documents that best match the question "
    "instead of being written by a model.*"
)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"\w+", re.UNICODE)
# Words too common to say anything about relevance.
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "the",
        "this",
        "that",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
    ]
)
MAX_QUOTE_CHARS = 400
MAX_PASSAGES_QUOTED = 5


def _terms(text: str) -> set[str]:
    return {w for w in (m.lower() for m in _WORD.findall(text)) if w not in _STOPWORDS}


def best_excerpt(passage_text: str, question: str, max_chars: int = MAX_QUOTE_CHARS) -> str:
    """The sentence(s) of a passage most related to the question, in their original order."""
    sentences = [
        s.strip() for s in _SENTENCE_END.split(" ".join(passage_text.split())) if s.strip()
    ]
    if not sentences:
        return ""
    wanted = _terms(question)
    ranked = sorted(range(len(sentences)), key=lambda i: (-len(_terms(sentences[i]) & wanted), i))
    chosen: list[int] = []
    length = 0
    for index in ranked:
        relevant = bool(_terms(sentences[index]) & wanted)
        # Stop at the first unrelated sentence once something related is quoted,
        # or when the quote would grow too long.
        if chosen and (not relevant or length + len(sentences[index]) > max_chars):
            break
        chosen.append(index)
        length += len(sentences[index])
        if not relevant:
            break  # nothing relates to the question: the opening sentence will do
    excerpt = " ".join(sentences[i] for i in sorted(chosen))
    return excerpt if len(excerpt) <= max_chars else excerpt[: max_chars - 1].rstrip() + "…"


def compose_offline_answer(question: str, passages: list[Passage]) -> str:
    if not passages:
        return (
            f"{OFFLINE_LABEL}\n\nNo passage of your documents matches this question. "
            "Try other words, lower the minimum similarity, or upload documents to the project."
        )
    lines = [OFFLINE_LABEL, "", "The most relevant passages:"]
    for passage in passages[:MAX_PASSAGES_QUOTED]:
        excerpt = best_excerpt(passage.text, question)
        lines.append("")
        lines.append(f"> {excerpt} [{passage.number}]")
        lines.append(f"— {passage.label()}")
    return "\n".join(lines)


class OfflineChatModel:
    """A ChatModel that needs no network: quotes passages, streamed word by word."""

    offline = True

    async def stream(self, request: ModelRequest) -> AsyncIterator[LLMEvent]:
        answer = compose_offline_answer(request.question, list(request.passages))
        pieces = re.findall(r"\S+\s*|\s+", answer)
        for piece in pieces:
            yield TextDelta(piece)
            # Hand control back so other streams interleave, as a network stream would.
            await asyncio.sleep(0)
        yield Usage(input_tokens=0, output_tokens=estimate_tokens(answer), stop_reason="offline")

"""A passage: one retrieved chunk, numbered as the model and the user see it ([n]).

The same passage travels as a search hit, in the prompt, in the `sources` event, as a
saved ``MessageSource`` and inside an artifact's ``sources`` (JSON); the conversions
between those shapes live here, once.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from app.models.conversation import MessageSource

if TYPE_CHECKING:
    from app.services.retrieval import SearchHit


@dataclass
class Passage:
    """One retrieved chunk, numbered as the model and the user will see it."""

    number: int
    text: str
    document_id: uuid.UUID | None
    document_name: str
    chunk_id: str | None = None  # the vector store's node id
    page: int | None = None
    heading: str | None = None
    score: float | None = None

    def label(self) -> str:
        """'handbook.pdf, page 3, "Refunds"' — where the passage comes from."""
        parts = [self.document_name]
        if self.page is not None:
            parts.append(f"page {self.page}")
        if self.heading:
            parts.append(f'"{self.heading}"')
        return ", ".join(parts)

    @classmethod
    def from_hit(cls, number: int, hit: SearchHit) -> Passage:
        return cls(
            number=number,
            text=hit.text,
            document_id=hit.document_id,
            document_name=hit.document_name,
            chunk_id=hit.chunk_id,
            page=hit.page,
            heading=hit.heading,
            score=round(hit.similarity, 4),  # cosine similarity: what people understand
        )

    @classmethod
    def from_source(cls, source: MessageSource) -> Passage:
        """The passage a saved answer was given."""
        return cls(**{name: getattr(source, name) for name in _FIELDS})

    def to_source(self, *, cited: bool) -> MessageSource:
        """The row that saves this passage with an answer."""
        return MessageSource(**asdict(self), cited=cited)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the `sources` event and an artifact's stored sources."""
        data = asdict(self)
        data["document_id"] = str(self.document_id) if self.document_id else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Passage:
        values = {name: data.get(name) for name in _FIELDS}
        if values["document_id"]:
            values["document_id"] = uuid.UUID(str(values["document_id"]))
        return cls(**values)


_FIELDS = tuple(field.name for field in fields(Passage))

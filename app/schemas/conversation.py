"""Request/response bodies of /api/conversations."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.types import name

Title = name(max_length=200)


class SourceRead(BaseModel):
    """A numbered passage an answer was given; `cited` if the answer cites [number]."""

    model_config = ConfigDict(from_attributes=True)

    number: int
    cited: bool
    document_id: uuid.UUID | None
    chunk_id: str | None
    document_name: str
    page: int | None
    heading: str | None
    score: float | None
    text: str


class MessageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    position: int
    role: str = Field(description="user | assistant")
    content: str
    status: str = Field(
        description="complete | incomplete (cut off, partial text kept) | failed (no text)"
    )
    error: str | None = Field(description="Why the answer is incomplete or failed.")
    model: str | None
    offline: bool = Field(description="True when the answer quotes passages, written by no model.")
    input_tokens: int | None
    output_tokens: int | None
    created_at: datetime
    sources: list[SourceRead] = []


class ConversationSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    project_id: uuid.UUID | None
    created_at: datetime
    last_activity_at: datetime
    message_count: int


class ConversationRead(ConversationSummary):
    messages: list[MessageRead]


class ConversationUpdate(BaseModel):
    title: Title


class ConversationSearchHit(ConversationSummary):
    snippet: str = Field(description="Text around the first match (title or a message).")

"""Request/response bodies of /api/artifacts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

ArtifactKind = Literal["markdown", "code", "table"]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
MAX_CONTENT_CHARS = 200_000


class ArtifactCreate(BaseModel):
    """Either from an assistant message (`message_id`) or on request (`request`)."""

    title: Title | None = Field(default=None, description="None: derived from the content/request.")
    kind: ArtifactKind = "markdown"
    message_id: uuid.UUID | None = Field(
        default=None, description="Assistant message whose answer becomes the artifact."
    )
    request: str | None = Field(
        default=None,
        min_length=1,
        max_length=8000,
        description='What to make, e.g. "draft a FAQ from these documents".',
    )
    project_id: uuid.UUID | None = Field(
        default=None, description="With `request`: project whose documents are used."
    )
    conversation_id: uuid.UUID | None = Field(
        default=None, description="With `request`: conversation it belongs to."
    )
    max_context_chunks: int = Field(default=8, ge=1, le=20)
    min_similarity: float = Field(default=0.2, ge=0, le=1)
    model: str | None = None

    @model_validator(mode="after")
    def _one_origin(self) -> ArtifactCreate:
        if (self.message_id is None) == (self.request is None or not self.request.strip()):
            raise ValueError("give exactly one of 'message_id' or 'request'")
        return self


class ArtifactUpdate(BaseModel):
    """An edit: new content makes a new version; a new title renames."""

    title: Title | None = None
    content: str | None = Field(default=None, max_length=MAX_CONTENT_CHARS)

    @model_validator(mode="after")
    def _something(self) -> ArtifactUpdate:
        if self.title is None and self.content is None:
            raise ValueError("give at least one of 'title' or 'content'")
        return self


class ArtifactVersionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    content: str
    origin: str = Field(description="created | edited | regenerated")
    created_at: datetime


class ArtifactRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    kind: ArtifactKind
    project_id: uuid.UUID | None
    conversation_id: uuid.UUID | None
    message_id: uuid.UUID | None
    request: str | None
    current_version: int
    content: str = Field(description="Content of the current version.")
    created_at: datetime
    updated_at: datetime


class ArtifactSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    kind: ArtifactKind
    conversation_id: uuid.UUID | None
    current_version: int
    updated_at: datetime

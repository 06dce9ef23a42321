"""Request/response bodies of /api/artifacts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.schemas.chat import ModelName
from app.schemas.types import given, name, text, visible_text

ArtifactKind = Literal["markdown", "code", "table"]
Title = name(max_length=200)
Request = visible_text(
    max_length=8000, description='What to make, e.g. "draft a FAQ from these documents".'
)
MAX_CONTENT_CHARS = 200_000
Content = text(max_length=MAX_CONTENT_CHARS)


class ArtifactCreate(BaseModel):
    """Either from an assistant message (`message_id`) or on request (`request`)."""

    model_config = ConfigDict(json_schema_extra=given("message_id", "request", exactly_one=True))

    title: Title | None = Field(default=None, description="None: derived from the content/request.")
    kind: ArtifactKind = "markdown"
    message_id: uuid.UUID | None = Field(
        default=None, description="Assistant message whose answer becomes the artifact."
    )
    request: Request | None = None
    project_id: uuid.UUID | None = Field(
        default=None, description="With `request`: project whose documents are used."
    )
    conversation_id: uuid.UUID | None = Field(
        default=None, description="With `request`: conversation it belongs to."
    )
    max_context_chunks: int = Field(default=8, ge=1, le=20)
    min_similarity: float = Field(default=0.2, ge=0, le=1)
    model: ModelName | None = None

    @model_validator(mode="after")
    def _one_origin(self) -> ArtifactCreate:
        if (self.message_id is None) == (self.request is None):
            raise ValueError("give exactly one of 'message_id' or 'request'")
        return self


class ArtifactUpdate(BaseModel):
    """An edit: new content makes a new version; a new title renames."""

    model_config = ConfigDict(json_schema_extra=given("title", "content"))

    title: Title | None = None
    content: Content | None = None

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

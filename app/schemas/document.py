"""Response bodies of /api/projects/{project_id}/documents."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.models.document import DocumentStatus


class DocumentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    project_id: uuid.UUID
    filename: str
    content_type: str
    kind: str = Field(description="pdf, docx, markdown, html or text (detected from content).")
    size_bytes: int
    sha256: str = Field(description="SHA-256 of the file; the same content is stored once.")
    status: DocumentStatus = Field(description="queued, processing, ready or failed.")
    progress: int = Field(description="Percent done while processing (100 when ready).")
    error: str | None = Field(description="Why processing failed (status 'failed').")
    page_count: int | None = Field(description="Pages of a PDF.")
    chunk_count: int
    created_at: datetime
    updated_at: datetime


class DocumentUploadRead(DocumentRead):
    duplicate: bool = Field(
        description="True when the project already had this exact content: the existing "
        "document is returned and nothing new is stored."
    )

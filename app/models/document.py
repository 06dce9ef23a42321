"""Documents: an uploaded file in a project, and its ingestion state.

The chunks cut from a document live in ``data_chunks``, the table LlamaIndex's
``PGVectorStore`` reads and writes (see ``app.services.vector_store``); it is created
by migration 0002, not mapped here. Its ``document_id``/``project_id`` columns are
generated from the chunk metadata and carry ``ON DELETE CASCADE`` foreign keys, so
deleting a document or a project removes its chunks in the same transaction.

Life cycle (``status``): ``queued`` -> ``processing`` (``progress`` 0-100) -> ``ready``,
or ``failed`` with ``error`` saying why, in words for the user.
"""

from __future__ import annotations

import enum
import uuid

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin, UUIDPrimaryKeyMixin


class DocumentStatus(enum.StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class Document(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "documents"
    __table_args__ = (
        # Same content twice in one project is one document (the upload answers with it).
        UniqueConstraint("project_id", "sha256"),
        CheckConstraint(
            "status IN ('queued', 'processing', 'ready', 'failed')", name="status_valid"
        ),
        CheckConstraint("progress BETWEEN 0 AND 100", name="progress_range"),
        # The worker looks for work here; the partial index stays tiny.
        Index(
            "ix_documents_pending",
            "created_at",
            postgresql_where=text("status IN ('queued', 'processing')"),
        ),
    )

    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=False, index=True
    )
    owner_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    content_type: Mapped[str] = mapped_column(String(100), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # parsing.DocumentKind
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    # Relative to Settings.uploads_dir, so the data directory can move.
    storage_path: Mapped[str] = mapped_column(String(500), nullable=False)
    status: Mapped[str] = mapped_column(
        String(16), nullable=False, default=DocumentStatus.QUEUED, server_default="queued"
    )
    progress: Mapped[int] = mapped_column(
        SmallInteger, nullable=False, default=0, server_default="0"
    )
    error: Mapped[str | None] = mapped_column(Text)
    page_count: Mapped[int | None] = mapped_column(Integer)
    chunk_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    # Times a worker claimed it. A document whose processing kills the process is found
    # 'processing' at the next start; past INGEST_MAX_ATTEMPTS it fails instead of
    # being taken up again (one bad file must not crash-loop the app).
    attempts: Mapped[int] = mapped_column(
        SmallInteger, nullable=False, default=0, server_default="0"
    )
    # The model whose vectors the chunks hold (reindex after a change of EMBEDDING_MODEL).
    embedding_model: Mapped[str | None] = mapped_column(String(200))

    def __repr__(self) -> str:
        return f"Document(id={self.id}, filename={self.filename!r}, status={self.status})"

"""Conversations, their messages and citations; artifacts and their versions.

Citations are stored as a snapshot (document name, page, heading, the quoted
text, the score) next to the ids: a conversation reloaded next month shows the
same sources even if the document was deleted or the project re-indexed since.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, CreatedAtMixin, TimestampMixin, UUIDPrimaryKeyMixin

MESSAGE_ROLES = ("user", "assistant")
# complete: the whole answer; incomplete: cut off (model error, timeout, client gone),
# the text is what arrived; failed: no text at all (the error is in `error`).
MESSAGE_STATUSES = ("complete", "incomplete", "failed")
ARTIFACT_KINDS = ("markdown", "code", "table")


class Conversation(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_user_id_last_activity", "user_id", "last_activity_at"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    # Deleting a project deletes its conversations too: they quote its documents.
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=True, index=True
    )
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    # False once a person renamed it: auto-titling never overwrites a chosen title.
    title_is_auto: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    last_activity_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    # Highest Message.position so far; bumped under a row lock so concurrent sends
    # to one conversation get distinct, ordered positions.
    message_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation",
        order_by="Message.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class Message(UUIDPrimaryKeyMixin, CreatedAtMixin, Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("conversation_id", "position"),
        CheckConstraint(f"role IN {MESSAGE_ROLES}", name="role"),
        CheckConstraint(f"status IN {MESSAGE_STATUSES}", name="status"),
    )

    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    )
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False, default="")
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="complete")
    # Why an answer is incomplete/failed, in words a person understands.
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    model: Mapped[str | None] = mapped_column(String(100), nullable=True)
    offline: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    input_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)

    conversation: Mapped[Conversation] = relationship(back_populates="messages")
    sources: Mapped[list[MessageSource]] = relationship(
        back_populates="message",
        order_by="MessageSource.number",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="selectin",
    )


class MessageSource(UUIDPrimaryKeyMixin, Base):
    """One numbered passage given to the model for an answer, and whether it was cited."""

    __tablename__ = "message_sources"
    __table_args__ = (UniqueConstraint("message_id", "number"),)

    message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), nullable=False
    )
    number: Mapped[int] = mapped_column(Integer, nullable=False)  # the n of [n]
    cited: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Plain ids, no foreign keys: the snapshot below stays valid after a re-index.
    document_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    chunk_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    document_name: Mapped[str] = mapped_column(String(500), nullable=False)
    page: Mapped[int | None] = mapped_column(Integer, nullable=True)
    heading: Mapped[str | None] = mapped_column(Text, nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    text: Mapped[str] = mapped_column(Text, nullable=False)

    message: Mapped[Message] = relationship(back_populates="sources")


class Artifact(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    """A document made in a chat (a FAQ, a table, a snippet), versioned."""

    __tablename__ = "artifacts"
    __table_args__ = (CheckConstraint(f"kind IN {ARTIFACT_KINDS}", name="kind"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("projects.id", ondelete="SET NULL"), nullable=True
    )
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL"), nullable=True, index=True
    )
    message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), nullable=True
    )
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    # What was asked ("draft a FAQ"); regenerate asks it again. None: made from a message.
    request: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The passages it was made from (list of Passage dicts), reused by regenerate.
    sources: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False, default=list)
    current_version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    versions: Mapped[list[ArtifactVersion]] = relationship(
        back_populates="artifact",
        order_by="ArtifactVersion.version",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class ArtifactVersion(UUIDPrimaryKeyMixin, CreatedAtMixin, Base):
    __tablename__ = "artifact_versions"
    __table_args__ = (UniqueConstraint("artifact_id", "version"),)

    artifact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("artifacts.id", ondelete="CASCADE"), nullable=False
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    # How this version came to be: created | edited | regenerated.
    origin: Mapped[str] = mapped_column(String(16), nullable=False)
    input_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)

    artifact: Mapped[Artifact] = relationship(back_populates="versions")

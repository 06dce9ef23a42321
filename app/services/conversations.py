"""Conversations of one user: list, load, rename, delete, search, export to Markdown.

Every function takes the user id and only ever sees that user's rows: a foreign
id behaves exactly like an unknown one (None -> 404 in the routes).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime

from sqlalchemy import Select, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.models.conversation import Conversation, Message

SNIPPET_CHARS = 160


def _owned(user_id: uuid.UUID) -> Select[tuple[Conversation]]:
    return select(Conversation).where(Conversation.user_id == user_id)


async def list_conversations(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    project_id: uuid.UUID | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Conversation]:
    """Newest activity first."""
    query = _owned(user_id)
    if project_id is not None:
        query = query.where(Conversation.project_id == project_id)
    query = (
        query.order_by(Conversation.last_activity_at.desc(), Conversation.id)
        .limit(limit)
        .offset(offset)
    )
    return list((await session.scalars(query)).all())


async def get_conversation(
    session: AsyncSession,
    user_id: uuid.UUID,
    conversation_id: uuid.UUID,
    *,
    with_messages: bool = False,
) -> Conversation | None:
    query = _owned(user_id).where(Conversation.id == conversation_id)
    if with_messages:
        query = query.options(selectinload(Conversation.messages).selectinload(Message.sources))
    return await session.scalar(query)


async def rename_conversation(
    session: AsyncSession, conversation: Conversation, title: str
) -> Conversation:
    conversation.title = title
    conversation.title_is_auto = False
    await session.commit()
    await session.refresh(conversation)
    return conversation


async def delete_conversation(session: AsyncSession, conversation: Conversation) -> None:
    # Messages and citations go with it (ON DELETE CASCADE); artifacts stay, detached.
    await session.execute(delete(Conversation).where(Conversation.id == conversation.id))
    await session.commit()


def _escape_like(text: str) -> str:
    return re.sub(r"([\\%_])", r"\\\1", text)


def _snippet(text: str, needle: str) -> str:
    flat = " ".join(text.split())
    at = flat.lower().find(needle.lower())
    if at < 0:
        return flat[:SNIPPET_CHARS]
    start = max(at - SNIPPET_CHARS // 3, 0)
    end = min(start + SNIPPET_CHARS, len(flat))
    return ("…" if start else "") + flat[start:end] + ("…" if end < len(flat) else "")


async def search_conversations(
    session: AsyncSession, user_id: uuid.UUID, text: str, *, limit: int = 20
) -> list[tuple[Conversation, str]]:
    """Conversations whose title or any message contains `text` (case-insensitive),
    newest first, each with a snippet around the first match.

    ILIKE rather than full-text search: people search their chats for exact
    words, names and codes, which stemming and stop words would lose.
    """
    pattern = f"%{_escape_like(text)}%"
    matching_message = (
        select(Message.conversation_id)
        .where(Message.content.ilike(pattern, escape="\\"))
        .scalar_subquery()
    )
    query = (
        _owned(user_id)
        .where(
            or_(
                Conversation.title.ilike(pattern, escape="\\"),
                Conversation.id.in_(matching_message),
            )
        )
        .order_by(Conversation.last_activity_at.desc())
        .limit(limit)
    )
    conversations = list((await session.scalars(query)).all())
    hits: list[tuple[Conversation, str]] = []
    for conversation in conversations:
        if text.lower() in conversation.title.lower():
            hits.append((conversation, conversation.title))
            continue
        first = await session.scalar(
            select(Message.content)
            .where(
                Message.conversation_id == conversation.id,
                Message.content.ilike(pattern, escape="\\"),
            )
            .order_by(Message.position)
            .limit(1)
        )
        hits.append((conversation, _snippet(first or "", text)))
    return hits


async def count_messages(session: AsyncSession, conversation_id: uuid.UUID) -> int:
    return (
        await session.scalar(
            select(func.count())
            .select_from(Message)
            .where(Message.conversation_id == conversation_id)
        )
        or 0
    )


# --- Markdown export -------------------------------------------------------------------------
def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _footnote_markers(body: str, position: int, numbers: set[int]) -> str:
    """[2] -> [^m5-2] for the passages this message was given."""
    return re.sub(
        r"\[(\d{1,3})\]",
        lambda m: f"[^m{position}-{m.group(1)}]" if int(m.group(1)) in numbers else m.group(0),
        body,
    )


def conversation_to_markdown(conversation: Conversation) -> str:
    """Messages in order with timestamps; each answer's citations [n] become footnotes.

    Footnote labels are made unique across the file ([^m3-1] = message 3, passage 1),
    because every answer numbers its passages from 1.
    """
    lines = [
        f"# {conversation.title}",
        "",
        f"*Exported conversation, started {_when(conversation.created_at)}.*",
        "",
    ]
    for message in conversation.messages:
        who = "You" if message.role == "user" else "Assistant"
        note = ""
        if message.offline:
            note = " (offline mode: quoted passages, not written by a model)"
        if message.status != "complete":
            note += f" — {message.status}: {message.error or ''}".rstrip(": ")
        lines.append(f"## {who} · {_when(message.created_at)}{note}")
        lines.append("")
        body = message.content or "*(no answer)*"
        if message.sources:
            body = _footnote_markers(body, message.position, {s.number for s in message.sources})
        lines.append(body)
        lines.append("")
        for source in message.sources:
            where = [source.document_name]
            if source.page is not None:
                where.append(f"page {source.page}")
            if source.heading:
                where.append(f"“{source.heading}”")
            quote = " ".join(source.text.split())
            if len(quote) > 300:
                quote = quote[:299] + "…"
            score = f" (similarity {source.score:.2f})" if source.score is not None else ""
            lines.append(
                f"[^m{message.position}-{source.number}]: {', '.join(where)}{score}: {quote}"
            )
        if message.sources:
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def export_filename(conversation: Conversation) -> str:
    slug = (
        re.sub(r"[^A-Za-z0-9]+", "-", conversation.title).strip("-").lower()[:60] or "conversation"
    )
    return f"{slug}.md"

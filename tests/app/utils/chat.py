"""Asking a question through the streaming chat API."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select

from app.api.sse import parse_sse
from app.core.config import Settings
from app.core.db import get_sessionmaker
from app.models.conversation import Message


async def ask(client: httpx.AsyncClient, headers: dict[str, str], message: str, **body) -> dict:
    """Ask over ``/api/chat/stream``; the ``done`` event's data plus the conversation id."""
    response = await client.post(
        "/api/chat/stream", json={"message": message, **body}, headers=headers
    )
    assert response.status_code == 200, response.text
    events = dict(parse_sse(response.text))
    return {"conversation_id": events["conversation"]["conversation_id"], **events["done"]}


async def messages_of(settings: Settings, conversation_id: str) -> list[Message]:
    """The conversation's saved messages, in order, read from the database."""
    async with get_sessionmaker(settings)() as session:
        rows = await session.scalars(
            select(Message)
            .where(Message.conversation_id == uuid.UUID(conversation_id))
            .order_by(Message.position)
        )
        return list(rows.all())

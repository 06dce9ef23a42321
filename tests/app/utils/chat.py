"""Asking a question through the streaming chat API."""

from __future__ import annotations

import httpx

from app.api.sse import parse_sse


async def ask(client: httpx.AsyncClient, headers: dict[str, str], message: str, **body) -> dict:
    """Ask over ``/api/chat/stream``; the ``done`` event's data plus the conversation id."""
    response = await client.post(
        "/api/chat/stream", json={"message": message, **body}, headers=headers
    )
    assert response.status_code == 200, response.text
    events = dict(parse_sse(response.text))
    return {"conversation_id": events["conversation"]["conversation_id"], **events["done"]}

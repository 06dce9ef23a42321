"""The chat's Server-Sent Events protocol: event names and how one is written.

Each event is `event: <name>` plus one `data:` line holding a JSON object.
In order, for one question:

    conversation  {"conversation_id", "title", "user_message_id"}       always first
    sources       {"sources": [{"number", "document_id", "document_name", "chunk_id",
                                "page", "heading", "score", "text"}]}  before any token
    token         {"text"}                                               zero or more
    usage         {"input_tokens", "output_tokens", "model", "offline"}  when the model finished
    error         {"message", "retryable", "kind"}                       only if it failed
    done          {"message_id", "status", "cited"}                     last

(One exception: if the conversation, or the project of a new one, is deleted while the
question is being sent, an `error` of kind "not_found" is the only event: nothing was
saved, no `conversation` and no `done`.)

If the database goes away during the turn, the stream ends with an `error` of kind
"database_unavailable" (retryable) and a `done` whose `message_id` is null and `status`
"failed": the answer was not saved (and without `conversation` before them, neither was
the question).

`status` is complete | incomplete (cut off; the partial text is saved) | failed
(no text). Comment lines (`: ping ...`) are heartbeats every CHAT_HEARTBEAT_SECONDS
so proxies keep idle connections open; clients ignore them.

The events come from ``app.services.chat.stream_turn`` as (name, data) pairs; the
streaming itself is sse-starlette's EventSourceResponse (heartbeats, client disconnect
detection); this module only fixes the encoding in one place.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from sse_starlette import ServerSentEvent

from app.services.chat import ChatEvent, EventName


def sse_event(name: EventName, data: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(event=name, data=json.dumps(data, ensure_ascii=False, default=str))


async def sse_events(
    events: AsyncGenerator[ChatEvent, None],
) -> AsyncIterator[ServerSentEvent]:
    """A turn's events as SSE. Closing this closes ``events`` (which cancels the turn)."""
    try:
        async for name, data in events:
            yield sse_event(name, data)
    finally:
        await events.aclose()


def parse_sse(raw: str) -> list[tuple[str, dict[str, Any]]]:
    """Read a whole SSE body back into (event, data) pairs, skipping comments.

    Used by the tests, the benchmarks and anybody scripting the API in Python.
    """
    events: list[tuple[str, dict[str, Any]]] = []
    for block in raw.replace("\r\n", "\n").split("\n\n"):
        name, data_lines = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data_lines.append(line[5:].lstrip())
        if data_lines:
            events.append((name, json.loads("\n".join(data_lines))))
    return events

"""/api/chat: ask a question; the answer streamed (SSE) or whole (JSON).

The SSE protocol is described in app/api/sse.py (and docs/ARCHITECTURE.md).
Ownership and input are checked before the stream starts, so a foreign
conversation or project is a plain 404 and bad input a plain 422.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status
from sse_starlette import EventSourceResponse

from app.api.billing_errors import LIMIT_RESPONSES, usage_headers
from app.api.deps import CurrentUser, SessionDep, SettingsDep, allowed_model
from app.api.sse import sse_events
from app.core.config import Settings
from app.core.db import get_sessionmaker
from app.models.conversation import Message
from app.schemas.chat import ChatError, ChatRequest, ChatResponse, ChatUsage
from app.schemas.conversation import MessageRead
from app.services import chat as chat_service
from app.services import usage
from app.services.llm.factory import get_chat_model

router = APIRouter(prefix="/chat", tags=["chat"])

_RESPONSES = {
    404: {"description": "Project or conversation not found"},
    422: {"description": "Empty or oversized message, value out of range, or unknown model"},
    **LIMIT_RESPONSES,
}
_USAGE_HEADERS = {
    "X-Usage-Limit": {"description": "Messages the plan allows this period ('unlimited')"},
    "X-Usage-Remaining": {"description": "Messages left this period, this one counted"},
    "X-Usage-Reset": {"description": "When the period ends and the counter starts again"},
}


async def _prepare(
    body: ChatRequest, user: CurrentUser, session: SessionDep, settings: Settings
) -> chat_service.ChatTurn:
    allowed_model(body.model, settings)
    query_vector = chat_service.start_query_embedding(settings, body)
    try:
        conversation = await chat_service.open_conversation(session, user.id, body)
    except chat_service.NotFound as error:
        if query_vector is not None:
            query_vector.cancel()
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=str(error)) from None
    try:  # counted before the model runs; 402 when the plan's messages are used up
        quota = await usage.consume_message(
            session, user.id, settings, model=body.model or settings.chat_model
        )
    except usage.LimitExceeded:
        if query_vector is not None:
            query_vector.cancel()
        raise
    turn = chat_service.ChatTurn(
        settings=settings,
        sessionmaker=get_sessionmaker(settings),
        model=get_chat_model(settings),
        user_id=user.id,
        conversation=conversation,
        request=body,
        query_vector=query_vector,
        quota=quota,
    )
    # The turn uses its own short sessions. Hand the request's connection back to the
    # pool now, or every open stream would hold one (idle in transaction) to its end.
    await session.close()
    return turn


@router.post(
    "/stream",
    responses={
        200: {
            "description": "Server-Sent Events: conversation, sources, token…, usage, error, done",
            "content": {"text/event-stream": {}},
            "headers": _USAGE_HEADERS,
        },
        **_RESPONSES,
    },
)
async def chat_stream(
    body: ChatRequest, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> EventSourceResponse:
    """Answer a question as a stream of Server-Sent Events (try it with `curl -N`)."""
    turn = await _prepare(body, user, session, settings)
    return EventSourceResponse(
        sse_events(chat_service.stream_turn(turn)),
        ping=settings.chat_heartbeat_seconds,
        # Tell nginx not to buffer: tokens must reach the browser as they come.
        headers={
            "X-Accel-Buffering": "no",
            "Cache-Control": "no-cache",
            **usage_headers(turn.quota),
        },
    )


@router.post(
    "",
    response_model=ChatResponse,
    responses={200: {"description": "The saved answer", "headers": _USAGE_HEADERS}, **_RESPONSES},
)
async def chat(
    body: ChatRequest,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> ChatResponse:
    """Answer a question and return the whole saved answer with its sources.

    A model failure still answers 200 with the saved (failed or incomplete) message
    and an `error` object, because the question and any partial answer were saved.
    """
    turn = await _prepare(body, user, session, settings)
    response.headers.update(usage_headers(turn.quota))

    async def ignore(*_: object) -> None:
        return None

    result = await turn.run(ignore)
    if result.unavailable is not None:  # nothing of the answer was saved: 503, retry later
        raise result.unavailable
    async with get_sessionmaker(settings)() as read_session:
        message = await read_session.get(Message, result.message_id)
        assert message is not None
        message_read = MessageRead.model_validate(message)
    return ChatResponse(
        conversation_id=result.conversation_id,
        user_message_id=result.user_message_id,  # type: ignore[arg-type]
        message=message_read,
        usage=ChatUsage(
            input_tokens=result.usage.input_tokens, output_tokens=result.usage.output_tokens
        )
        if result.usage
        else None,
        error=ChatError(
            message=result.error.message, retryable=result.error.retryable, kind=result.error.kind
        )
        if result.error
        else None,
    )

"""/api/conversations: a user's chats. Other users' conversations answer 404."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

from app.api.deps import CurrentUser, SessionDep
from app.models.conversation import Conversation
from app.schemas.conversation import (
    ConversationRead,
    ConversationSearchHit,
    ConversationSummary,
    ConversationUpdate,
)
from app.schemas.types import NO_NUL_PATTERN, Offset
from app.services import conversations as conversation_service

router = APIRouter(prefix="/conversations", tags=["conversations"])

_NOT_FOUND = {404: {"description": "Conversation not found"}}


async def _owned_conversation(
    conversation_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> Conversation:
    conversation = await conversation_service.get_conversation(
        session, user.id, conversation_id, with_messages=True
    )
    if conversation is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Conversation not found")
    return conversation


OwnedConversation = Annotated[Conversation, Depends(_owned_conversation)]


@router.get("", response_model=list[ConversationSummary])
async def list_conversations(
    user: CurrentUser,
    session: SessionDep,
    project_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[Offset, Query()] = 0,
) -> list[ConversationSummary]:
    """Newest activity first, with title and last activity."""
    rows = await conversation_service.list_conversations(
        session, user.id, project_id=project_id, limit=limit, offset=offset
    )
    return [ConversationSummary.model_validate(row) for row in rows]


@router.get("/search", response_model=list[ConversationSearchHit])
async def search_conversations(
    user: CurrentUser,
    session: SessionDep,
    q: Annotated[
        str,
        Query(min_length=1, max_length=200, pattern=NO_NUL_PATTERN, description="Text to find"),
    ],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[ConversationSearchHit]:
    """Own conversations whose title or messages contain `q` (case-insensitive)."""
    hits = await conversation_service.search_conversations(session, user.id, q, limit=limit)
    return [
        ConversationSearchHit.model_validate(
            {**ConversationSummary.model_validate(conversation).model_dump(), "snippet": snippet}
        )
        for conversation, snippet in hits
    ]


@router.get("/{conversation_id}", response_model=ConversationRead, responses=_NOT_FOUND)
async def get_conversation(conversation: OwnedConversation) -> ConversationRead:
    """The conversation with every message and the sources each answer was given."""
    return ConversationRead.model_validate(conversation)


@router.patch("/{conversation_id}", response_model=ConversationSummary, responses=_NOT_FOUND)
async def rename_conversation(
    body: ConversationUpdate, conversation: OwnedConversation, session: SessionDep
) -> ConversationSummary:
    conversation = await conversation_service.rename_conversation(session, conversation, body.title)
    return ConversationSummary.model_validate(conversation)


@router.delete("/{conversation_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_NOT_FOUND)
async def delete_conversation(conversation: OwnedConversation, session: SessionDep) -> None:
    """Delete it with its messages and citations (artifacts made from it are kept)."""
    await conversation_service.delete_conversation(session, conversation)


@router.get(
    "/{conversation_id}/export",
    responses={200: {"content": {"text/markdown": {}}}, **_NOT_FOUND},
    response_class=Response,
)
async def export_conversation(conversation: OwnedConversation) -> Response:
    """The conversation as a Markdown file: messages, timestamps, sources as footnotes."""
    filename = conversation_service.export_filename(conversation)
    return Response(
        content=conversation_service.conversation_to_markdown(conversation),
        media_type="text/markdown; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )

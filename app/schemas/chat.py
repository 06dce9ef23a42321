"""Request/response bodies of /api/chat and /api/chat/stream."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import BaseModel, Field

from app.core.openapi import setting_enum
from app.schemas.conversation import MessageRead
from app.schemas.types import text, visible_text

MAX_MESSAGE_CHARS = 8000
Message = visible_text(
    max_length=MAX_MESSAGE_CHARS, description="The question (1 to 8000 characters)."
)
ModelName = Annotated[
    text(max_length=100), Field(json_schema_extra=setting_enum("chat_allowed_models"))
]


class ChatRequest(BaseModel):
    message: Message
    project_id: uuid.UUID | None = Field(
        default=None, description="Project whose documents are searched. None: no retrieval."
    )
    conversation_id: uuid.UUID | None = Field(
        default=None, description="Conversation to continue. None: a new one is created."
    )
    use_rag: bool = Field(default=True, description="Search the project's documents.")
    max_context_chunks: int = Field(
        default=6, ge=1, le=20, description="Most passages given to the model (1 to 20)."
    )
    min_similarity: float = Field(
        default=0.2, ge=0, le=1, description="Passages less similar than this are left out."
    )
    temperature: float = Field(default=0.2, ge=0, le=1, description="Model temperature (0 to 1).")
    model: ModelName | None = Field(
        default=None, description="Claude model, one of CHAT_ALLOWED_MODELS. None: CHAT_MODEL."
    )


class ChatError(BaseModel):
    message: str
    retryable: bool
    kind: str


class ChatUsage(BaseModel):
    input_tokens: int
    output_tokens: int


class ChatResponse(BaseModel):
    """The whole answer of POST /api/chat (the same things the stream sends)."""

    conversation_id: uuid.UUID
    user_message_id: uuid.UUID
    message: MessageRead
    usage: ChatUsage | None
    error: ChatError | None = Field(
        default=None, description="Set when the answer failed or was cut off; the message says why."
    )

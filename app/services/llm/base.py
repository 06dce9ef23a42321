"""What every chat model shares: the request, the events a stream yields, the errors.

A model is anything with ``stream(ModelRequest)``: an async iterator of ``TextDelta``
and a final ``Usage``. Its failures are ``LLMError`` subclasses, each with a sentence a
person can act on and a ``retryable`` flag.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from app.services.passages import Passage


# --- what a model stream yields -------------------------------------------------------------
@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer, in order."""

    text: str


@dataclass(frozen=True)
class Usage:
    """Sent once, last: tokens billed for the whole answer and why it stopped."""

    input_tokens: int
    output_tokens: int
    stop_reason: str | None = None


LLMEvent = TextDelta | Usage


@dataclass
class ModelRequest:
    """Everything a model needs for one answer.

    `passages` and `question` are there for the offline model, which answers
    from them directly; Claude reads them from `system` and `messages`.
    """

    system: str
    messages: list[dict[str, str]]
    model: str
    max_tokens: int
    temperature: float = 0.2
    passages: list[Passage] = field(default_factory=list)
    question: str = ""


class ChatModel(Protocol):
    #: True when answers are not written by a language model (the offline mode).
    offline: bool

    def stream(self, request: ModelRequest) -> AsyncIterator[LLMEvent]: ...


async def collect(model: ChatModel, request: ModelRequest) -> tuple[str, Usage]:
    """The whole answer at once (for `POST /api/chat` and artifacts)."""
    parts: list[str] = []
    usage = Usage(0, 0)
    async for event in model.stream(request):
        if isinstance(event, TextDelta):
            parts.append(event.text)
        else:
            usage = event
    return "".join(parts), usage


# --- errors ----------------------------------------------------------------------------------
class LLMError(Exception):
    """A model call failed. `message` is for a person; `retryable` says if trying again helps."""

    kind = "model_error"
    retryable = True

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable
        # Seconds the API asked us to wait (429's retry-after), if it said.
        self.retry_after: float | None = None


class LLMRateLimited(LLMError):
    kind = "rate_limited"


class LLMOverloaded(LLMError):
    kind = "overloaded"


class LLMUnavailable(LLMError):
    """5xx, connection refused/reset: the service or the network is down."""

    kind = "unavailable"


class LLMTimeout(LLMError):
    kind = "timeout"


class LLMStreamInterrupted(LLMError):
    """The API sent an `event: error` in the middle of a stream (the SDK raises
    APIStatusError with status 200 for it)."""

    kind = "stream_interrupted"


class LLMRejected(LLMError):
    """4xx other than 429: the request or the configuration is wrong; retrying won't help."""

    kind = "rejected"
    retryable = False

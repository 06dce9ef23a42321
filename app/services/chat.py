"""One chat turn: save the question, find passages, stream the answer, save it.

The order of things, and why:
1. The user's message is saved (and committed) first, whatever happens next.
2. `conversation`, then `sources` go out before the first token, so the browser
   can show where the answer comes from while it is being written.
3. Tokens are forwarded as they arrive from the model.
4. The assistant message, its citations and its token usage are saved in one
   transaction at the end. A failure or a disconnect saves what arrived, marked
   `incomplete` (or `failed` when nothing did), with the reason.
5. If Postgres goes away (restart, crash) while the question or the answer is being
   saved, that save's transaction leaves nothing behind; the stream still ends with an
   `error` (retryable) and `done`, and the non-streaming route answers 503. The message
   counted against the plan is handed back once the server answers again.

A turn runs in its own asyncio task (`stream_turn`), not in the response's task:
when the browser disconnects, the response task is cancelled and cancels the
turn, which closes the model's HTTP stream (no tokens paid for nobody) and still
gets to save the partial answer.

Two questions sent at once to one conversation are answered one after the
other (an in-process lock per conversation), so the second sees the first
answer in its history. Positions are allocated under a row lock
(SELECT ... FOR UPDATE on the conversation), so even two app processes (during a
blue-green switch) never give two messages the same place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core import metrics
from app.core.config import Settings
from app.core.db import DatabaseUnavailable
from app.models.conversation import Conversation, Message
from app.models.project import Project
from app.schemas.chat import ChatRequest
from app.services import embeddings, retrieval
from app.services.llm.base import ChatModel, LLMError, ModelRequest, TextDelta, Usage
from app.services.passages import Passage
from app.services.prompt import HistoryMessage, build_prompt, cited_numbers
from app.services.usage import (
    MessageQuota,
    add_tokens,
    release_message,
    release_when_reachable,
)

logger = logging.getLogger(__name__)

CLIENT_GONE = "The connection closed before the answer was finished; this is the part that arrived."
INTERNAL_ERROR = "Something went wrong on the server while answering. Please try again."
CONVERSATION_GONE = "This conversation was deleted while the question was being sent."
PROJECT_GONE = "This project was deleted while the question was being sent."
TITLE_LENGTH = 80

# The events of a turn, in order (their data: app/api/sse.py, which writes them as SSE).
EventName = Literal["conversation", "sources", "token", "usage", "error", "done"]
ChatEvent = tuple[EventName, dict[str, Any]]
Emit = Callable[[EventName, dict[str, Any]], Awaitable[None]]


class NotFound(LookupError):
    """A conversation or project that does not exist or is not the user's (answered 404)."""


# --- setting up a turn (in the request, before streaming starts) ----------------------------
def auto_title(question: str) -> str:
    """The first question, on one line, cut at a word boundary."""
    title = " ".join(question.split())
    if len(title) <= TITLE_LENGTH:
        return title
    cut = title[: TITLE_LENGTH - 1].rsplit(" ", 1)[0]
    return cut + "…"


async def open_conversation(
    session: AsyncSession, user_id: uuid.UUID, request: ChatRequest
) -> Conversation:
    """The conversation this question belongs to: the given one (if it is the user's) or a
    new one titled after the question. Raises NotFound for foreign or unknown ids.

    A new conversation is not saved here: the turn saves it together with its first
    question, in one transaction (a commit less before the first token).
    """
    if request.project_id is not None:
        project = await session.get(Project, request.project_id)
        if project is None or project.owner_id != user_id:
            raise NotFound("Project not found")
    if request.conversation_id is not None:
        conversation = await session.get(Conversation, request.conversation_id)
        if conversation is None or conversation.user_id != user_id:
            raise NotFound("Conversation not found")
        if request.project_id is not None and conversation.project_id != request.project_id:
            raise NotFound("Conversation not found in this project")
        return conversation
    return Conversation(
        id=uuid.uuid4(),
        user_id=user_id,
        project_id=request.project_id,
        title=auto_title(request.message),
        title_is_auto=True,
        message_count=0,
    )


# --- per-conversation ordering ---------------------------------------------------------------
_locks: weakref.WeakValueDictionary[uuid.UUID, asyncio.Lock] = weakref.WeakValueDictionary()


def conversation_lock(conversation_id: uuid.UUID) -> asyncio.Lock:
    lock = _locks.get(conversation_id)
    if lock is None:
        lock = asyncio.Lock()
        _locks[conversation_id] = lock
    return lock


async def _next_position(session: AsyncSession, conversation_id: uuid.UUID) -> int:
    """Reserve the next message position; the row lock lasts until the caller commits."""
    count = await session.scalar(
        select(Conversation.message_count)
        .where(Conversation.id == conversation_id)
        .with_for_update()
    )
    if count is None:
        raise NotFound("Conversation not found")  # deleted while we were answering
    await session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(message_count=count + 1, last_activity_at=func.now())
    )
    return count + 1


# --- the turn --------------------------------------------------------------------------------
@dataclass
class TurnResult:
    conversation_id: uuid.UUID
    user_message_id: uuid.UUID | None = None
    message_id: uuid.UUID | None = None
    status: str = "failed"
    content: str = ""
    passages: list[Passage] = field(default_factory=list)
    cited: list[int] = field(default_factory=list)
    usage: Usage | None = None
    error: LLMError | None = None
    # Set when Postgres went away: nothing more could be saved (the route answers 503).
    unavailable: DatabaseUnavailable | None = None


def start_query_embedding(
    settings: Settings, request: ChatRequest
) -> asyncio.Future[list[float]] | None:
    """Begin embedding the question in a thread, if the answer will search at all.

    Started first thing in a request, the ~15 ms of CPU overlap the database work that
    comes before the search (checking the project, opening the conversation).
    """
    if request.project_id is None or not request.use_rag or not request.message.strip():
        return None
    return asyncio.ensure_future(
        asyncio.to_thread(embeddings.embed_query, request.message.strip(), settings)
    )


async def find_passages(
    session: AsyncSession,
    settings: Settings,
    request: ChatRequest,
    project_id: uuid.UUID | None,
    query_vector: Awaitable[list[float]] | None = None,
) -> tuple[list[Passage], bool]:
    """Passages for the question, numbered from 1, and whether a search ran at all.

    ``query_vector``: the question's embedding if already under way
    (``start_query_embedding``); computed here otherwise.
    """
    if project_id is None or not request.use_rag:
        return [], False
    started = time.perf_counter()
    if query_vector is None:
        hits = await retrieval.search(
            session,
            project_id,
            request.message,
            top_k=request.max_context_chunks,
            min_similarity=request.min_similarity,
            settings=settings,
        )
    else:
        hits = await retrieval.search_by_vector(
            session,
            project_id,
            request.message,
            query_vector,
            top_k=request.max_context_chunks,
            min_similarity=request.min_similarity,
            settings=settings,
        )
    metrics.RETRIEVAL_SECONDS.observe(time.perf_counter() - started)
    return [Passage.from_hit(i, hit) for i, hit in enumerate(hits, start=1)], True


class ChatTurn:
    def __init__(
        self,
        *,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        model: ChatModel,
        user_id: uuid.UUID,
        conversation: Conversation,
        request: ChatRequest,
        query_vector: Awaitable[list[float]] | None = None,
        quota: MessageQuota | None = None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.model = model
        self.user_id = user_id
        self.conversation_id = conversation.id
        self.project_id = conversation.project_id
        self.title = conversation.title
        self.request = request
        self.started = time.perf_counter()  # for the time-to-first-token metric
        self.query_vector = query_vector  # the question's embedding, if already under way
        self.quota = quota  # the message counted against the plan for this turn
        self.model_name = request.model or settings.chat_model
        # Made here, so the history read that runs alongside the save can leave it out.
        self.result = TurnResult(conversation_id=conversation.id, user_message_id=uuid.uuid4())
        # Not saved yet (see open_conversation): saved with the question.
        self.new_conversation = conversation if request.conversation_id is None else None

    async def run(self, emit: Emit) -> TurnResult:
        async with conversation_lock(self.conversation_id):
            # Reading the context (query embedding, retrieval, history) does not need the
            # question to be saved: both run at once, which takes the save off the path
            # to the first token.
            context = asyncio.create_task(self._read_context())
            try:
                await self._save_user_message()
            except NotFound:
                _discard(context)
                await emit(
                    "error",
                    {
                        "message": PROJECT_GONE if self.new_conversation else CONVERSATION_GONE,
                        "retryable": False,
                        "kind": "not_found",
                    },
                )
                return self.result
            except DatabaseUnavailable as error:
                _discard(context)
                await self._database_gone(emit, error)
                return self.result
            except BaseException:
                _discard(context)
                raise
            await emit(
                "conversation",
                {
                    "conversation_id": str(self.conversation_id),
                    "title": self.title,
                    "user_message_id": str(self.result.user_message_id),
                },
            )
            parts: list[str] = []
            try:
                await self._answer(emit, parts, context)
            except asyncio.CancelledError:
                _discard(context)
                # The browser went away: the model stream is already closed (cancellation
                # went through it); keep what arrived. Shielded: a second cancel (shutdown)
                # must not lose it.
                await asyncio.shield(self._save_after_disconnect(parts))
                raise
            except DatabaseUnavailable as error:
                _discard(context)
                await self._database_gone(emit, error)
                return self.result
            except Exception:
                logger.exception("chat turn failed in conversation %s", self.conversation_id)
                metrics.count_llm_error("internal")
                self.result.error = LLMError(INTERNAL_ERROR)
                await self._save_answer(parts, error_message=INTERNAL_ERROR)
                await emit(
                    "error", {"message": INTERNAL_ERROR, "retryable": True, "kind": "internal"}
                )
            await emit(
                "done",
                {
                    "message_id": str(self.result.message_id),
                    "status": self.result.status,
                    "cited": self.result.cited,
                },
            )
        return self.result

    async def _database_gone(self, emit: Emit, error: DatabaseUnavailable) -> None:
        """End the stream cleanly when Postgres went away: the save that failed was one
        transaction (rolled back), so the answer, if any, is simply not saved."""
        self._answer_lost(error)
        self.result.unavailable = error
        await emit("error", {"message": str(error), "retryable": True, "kind": error.kind})
        await emit("done", {"message_id": None, "status": "failed", "cited": []})

    def _answer_lost(self, error: DatabaseUnavailable) -> None:
        """The answer could not be saved: log it and hand the counted message back (in the
        background, once Postgres answers again)."""
        logger.warning(
            "database unavailable during a chat turn in conversation %s: %s",
            self.conversation_id,
            error.__cause__,
        )
        if self.quota is not None:
            _track(asyncio.create_task(release_when_reachable(self.sessionmaker, self.quota)))

    async def _save_after_disconnect(self, parts: list[str]) -> None:
        """Save what arrived before the client left. Nobody reads this task's outcome (its
        stream is gone), so every failure ends here, logged."""
        try:
            await self._save_answer(parts, error_message=CLIENT_GONE)
        except DatabaseUnavailable as error:
            self._answer_lost(error)
        except Exception:
            logger.exception("saving a chat turn after its client left failed")

    async def _read_context(self) -> tuple[list[Passage], bool, list[HistoryMessage]]:
        async with self.sessionmaker() as session:
            # History first: it runs while the question's embedding is still being made.
            history = await self._history(session)
            passages, searched = await find_passages(
                session, self.settings, self.request, self.project_id, self.query_vector
            )
        return passages, searched, history

    async def _answer(
        self,
        emit: Emit,
        parts: list[str],
        context: asyncio.Task[tuple[list[Passage], bool, list[HistoryMessage]]],
    ) -> None:
        passages, searched, history = await context
        self.result.passages = passages
        await emit("sources", {"sources": [p.to_dict() for p in passages]})

        prompt = build_prompt(
            self.request.message,
            passages=passages,
            history=history,
            history_limit=self.settings.chat_history_messages,
            token_budget=self.settings.chat_context_token_budget,
            searched=searched,
        )
        model_request = ModelRequest(
            system=prompt.system,
            messages=prompt.messages,
            model=self.model_name,
            max_tokens=self.settings.chat_max_tokens,
            temperature=self.request.temperature,
            passages=prompt.passages,
            question=self.request.message,
        )
        usage: Usage | None = None
        error: LLMError | None = None
        try:
            async for event in self.model.stream(model_request):
                if isinstance(event, TextDelta):
                    if not parts:
                        metrics.CHAT_FIRST_TOKEN_SECONDS.observe(time.perf_counter() - self.started)
                    metrics.CHAT_TOKENS_STREAMED.inc()
                    parts.append(event.text)
                    await emit("token", {"text": event.text})
                else:
                    usage = event
        except LLMError as exc:
            metrics.count_llm_error(exc.kind)
            error = exc
        self.result.usage = usage
        self.result.error = error
        await self._save_answer(parts, error_message=error.message if error else None)
        if usage is not None:
            await emit(
                "usage",
                {
                    "input_tokens": usage.input_tokens,
                    "output_tokens": usage.output_tokens,
                    "model": self.model_name,
                    "offline": self.model.offline,
                },
            )
        if error is not None:
            await emit(
                "error",
                {"message": error.message, "retryable": error.retryable, "kind": error.kind},
            )

    async def _save_user_message(self) -> None:
        async with self.sessionmaker() as session:
            if self.new_conversation is not None:
                self.new_conversation.message_count = position = 1
                session.add(self.new_conversation)
            else:
                position = await _next_position(session, self.conversation_id)
            message = Message(
                id=self.result.user_message_id,
                conversation_id=self.conversation_id,
                position=position,
                role="user",
                content=self.request.message,
                status="complete",
            )
            session.add(message)
            try:
                await session.commit()
            except IntegrityError:
                if self.new_conversation is None:
                    raise
                # The project (or the account) was deleted since the request was checked.
                raise NotFound("Project not found") from None

    async def _history(self, session: AsyncSession) -> list[HistoryMessage]:
        """The last messages before this question (the conversation lock keeps others out)."""
        limit = self.settings.chat_history_messages
        if limit == 0 or self.new_conversation is not None:
            return []
        rows = (
            await session.scalars(
                select(Message)
                .where(
                    Message.conversation_id == self.conversation_id,
                    Message.id != self.result.user_message_id,
                )
                .order_by(Message.position.desc())
                .limit(limit)
            )
        ).all()
        return [
            HistoryMessage(role=m.role, content=m.content, incomplete=m.status != "complete")
            for m in reversed(rows)
        ]

    async def _save_answer(self, parts: list[str], *, error_message: str | None) -> None:
        """The answer, its citations and its usage, in one transaction."""
        if self.result.message_id is not None:
            return  # already saved (a disconnect right after the end)
        content = "".join(parts)
        usage = self.result.usage
        status = "complete" if error_message is None else "incomplete" if content else "failed"
        passages = self.result.passages
        cited = cited_numbers(content, len(passages))
        async with self.sessionmaker() as session:
            position = await _next_position(session, self.conversation_id)
            message = Message(
                conversation_id=self.conversation_id,
                position=position,
                role="assistant",
                content=content,
                status=status,
                error=error_message,
                model=None if self.model.offline else self.model_name,
                offline=self.model.offline,
                input_tokens=usage.input_tokens if usage else None,
                output_tokens=usage.output_tokens if usage else None,
            )
            message.sources = [p.to_source(cited=p.number in cited) for p in passages]
            session.add(message)
            if self.quota is not None:  # the usage counter, in the same transaction
                if status == "failed" and self.result.error is not None:
                    await release_message(session, self.quota)  # the model gave nothing
                elif usage is not None:
                    await add_tokens(session, self.quota, usage.input_tokens, usage.output_tokens)
            await session.commit()
        self.result.message_id = message.id
        self.result.status = status
        self.result.content = content
        self.result.cited = sorted(cited)


# --- running a turn for a streaming response -------------------------------------------------
# Turns still saving after their client left, and messages being handed back; kept so they
# are not garbage-collected and so shutdown can wait for them (`wait_for_turns`).
_running: set[asyncio.Task[Any]] = set()


def _track(task: asyncio.Task[Any]) -> None:
    _running.add(task)
    task.add_done_callback(_running.discard)


def _discard(task: asyncio.Task[Any]) -> None:
    """Cancel a helper task whose result is no longer wanted, and read its failure if it
    had already failed (else asyncio logs "Task exception was never retrieved")."""
    task.cancel()
    task.add_done_callback(lambda done: done.cancelled() or done.exception())


async def stream_turn(turn: ChatTurn) -> AsyncGenerator[ChatEvent, None]:
    """Run `turn` in its own task and yield its events; cancel it if the client leaves."""
    queue: asyncio.Queue[ChatEvent | None] = asyncio.Queue()

    async def emit(name: EventName, data: dict[str, Any]) -> None:
        queue.put_nowait((name, data))

    task = asyncio.create_task(turn.run(emit), name=f"chat-turn-{turn.conversation_id}")
    _track(task)
    task.add_done_callback(lambda _: queue.put_nowait(None))
    metrics.CHAT_OPEN_STREAMS.inc()
    try:
        while (item := await queue.get()) is not None:
            yield item
    finally:
        metrics.CHAT_OPEN_STREAMS.dec()
        if not task.done():
            task.cancel()


async def wait_for_turns(grace_seconds: float = 10.0) -> None:
    """Let turns whose client left finish saving, and counted messages be handed back
    (called at shutdown)."""
    if _running:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*_running, return_exceptions=True), timeout=grace_seconds
            )

"""POST /api/chat/stream and /api/chat against the real Postgres and the local Anthropic
stand-in (reached only through ANTHROPIC_BASE_URL, driven by the real SDK)."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from app.api.sse import parse_sse
from app.core.db import get_sessionmaker
from app.models.conversation import Conversation
from app.schemas.chat import ChatRequest
from app.services import chat as chat_service
from app.services.llm.factory import get_chat_model
from app.services.llm.offline import OFFLINE_LABEL
from app.services.prompt import SYSTEM_WITH_CONTEXT
from tests.app.utils.chat import messages_of
from tests.app.utils.indexed_project import index_project
from tests.fakes.anthropic_server import FakeAnthropicServer, Script

Events = list[tuple[str, dict]]


async def stream_chat(client: httpx.AsyncClient, headers: dict[str, str], **body) -> Events:
    response = await client.post("/api/chat/stream", json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return parse_sse(response.text)


def names(events: Events) -> list[str]:
    return [name for name, _ in events]


def tokens(events: Events) -> str:
    return "".join(data["text"] for name, data in events if name == "token")


def event(events: Events, name: str) -> dict:
    return next(data for n, data in events if n == name)


def set_settings(app, **changes) -> None:
    app.state.settings = app.state.settings.model_copy(update=changes)


# --- the happy path ----------------------------------------------------------------------
async def test_stream_sends_sources_then_tokens_then_done_and_saves_citations(
    chat_client, user_factory, anthropic_fake: FakeAnthropicServer, chat_settings
) -> None:
    user = await user_factory()
    project = await index_project(chat_client, user.headers, chat_settings)
    anthropic_fake.default = Script(text=None)  # echo: quotes and cites every passage

    events = await stream_chat(
        chat_client,
        user.headers,
        message="How long do I have to ask for a refund?",
        project_id=str(project.id),
        max_context_chunks=3,
    )
    order = names(events)
    assert order[0] == "conversation" and order[1] == "sources"
    assert order[-2:] == ["usage", "done"] and "error" not in order
    assert order.index("sources") < order.index("token")

    sources = event(events, "sources")["sources"]
    assert [s["number"] for s in sources] == list(range(1, len(sources) + 1))
    assert 1 <= len(sources) <= 3
    best = sources[0]
    assert best["document_name"] == "refund-policy.pdf" and best["page"] == 1
    assert best["heading"] == "Refunds" and 0 < best["score"] <= 1
    assert "30 days" in best["text"]

    answer = tokens(events)
    assert "[1]" in answer
    done = event(events, "done")
    assert done["status"] == "complete" and 1 in done["cited"]
    usage = event(events, "usage")
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["offline"] is False

    # What Claude was sent: fixed instructions, then the numbered passages (as quoted
    # documents) and the question in the user turn.
    sent = anthropic_fake.requests[-1]
    assert sent.system == SYSTEM_WITH_CONTEXT
    [question] = sent.messages
    assert question["role"] == "user"
    assert '[1] refund-policy.pdf, page 1, "Refunds"' in question["content"]
    assert question["content"].endswith(
        "<question>\nHow long do I have to ask for a refund?\n</question>"
    )
    assert sent.headers["x-api-key"] == "sk-ant-test-key"

    # Reloaded later: the same answer with the same sources.
    conversation_id = event(events, "conversation")["conversation_id"]
    reloaded = await chat_client.get(f"/api/conversations/{conversation_id}", headers=user.headers)
    assert reloaded.status_code == 200
    body = reloaded.json()
    assert body["title"] == "How long do I have to ask for a refund?"
    user_message, assistant = body["messages"]
    assert user_message["role"] == "user" and assistant["role"] == "assistant"
    assert assistant["id"] == done["message_id"]
    assert assistant["content"] == answer and assistant["status"] == "complete"
    assert [
        (s["number"], s["document_name"], s["page"], s["score"]) for s in assistant["sources"]
    ] == [(s["number"], s["document_name"], s["page"], s["score"]) for s in sources]
    assert assistant["sources"][0]["cited"] is True
    assert assistant["sources"][0]["document_id"] == str(project.document_ids["refund-policy.pdf"])
    assert assistant["input_tokens"] == usage["input_tokens"]


async def test_whole_answer_endpoint(
    chat_client, user_factory, anthropic_fake, chat_settings
) -> None:
    user = await user_factory()
    project = await index_project(chat_client, user.headers, chat_settings)
    anthropic_fake.default = Script(text="Three to five days [1].")
    response = await chat_client.post(
        "/api/chat",
        json={"message": "How long is standard shipping?", "project_id": str(project.id)},
        headers=user.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["error"] is None
    assert body["message"]["content"] == "Three to five days [1]."
    assert body["message"]["sources"][0]["document_name"] == "shipping.md"
    assert body["message"]["sources"][0]["cited"] is True
    assert body["usage"]["output_tokens"] == 5


async def test_without_project_no_retrieval(chat_client, user_factory, anthropic_fake) -> None:
    user = await user_factory()
    events = await stream_chat(chat_client, user.headers, message="Hello there")
    assert event(events, "sources") == {"sources": []}
    assert "No documents were searched" in anthropic_fake.requests[-1].system
    assert event(events, "done")["status"] == "complete"


async def test_prompt_holds_the_last_n_messages(
    chat_client, chat_app, user_factory, anthropic_fake
) -> None:
    set_settings(chat_app, chat_history_messages=4)
    user = await user_factory()
    conversation_id = None
    for i in range(4):
        anthropic_fake.script(Script(text=f"answer {i}"))
        body = {"message": f"question {i}"}
        if conversation_id:
            body["conversation_id"] = conversation_id
        events = await stream_chat(chat_client, user.headers, **body)
        conversation_id = event(events, "conversation")["conversation_id"]
    sent = anthropic_fake.requests[-1].messages
    assert [m["content"] for m in sent] == [
        "question 1",
        "answer 1",
        "question 2",
        "answer 2",
        "question 3",
    ][-5:]


# --- incremental delivery over a real socket ---------------------------------------------
async def test_tokens_reach_the_client_before_the_model_has_finished(
    live_chat_server: str, user_factory, anthropic_fake: FakeAnthropicServer
) -> None:
    user = await user_factory()
    anthropic_fake.default = Script(text="one two three four five six", token_delay=0.25)
    seen: list[tuple[float, str]] = []
    async with (
        httpx.AsyncClient(base_url=live_chat_server, timeout=30) as client,
        client.stream(
            "POST", "/api/chat/stream", json={"message": "count"}, headers=user.headers
        ) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                seen.append((time.monotonic(), line[6:].strip()))
    first_token_at = next(t for t, name in seen if name == "token")
    record = anthropic_fake.streams[-1]
    assert record.completed
    # The stand-in spends ~1.25 s between its first and last token: the first token
    # event reached us while it was still writing.
    assert first_token_at < record.ended_at - 0.5
    assert [name for _, name in seen].index("sources") < [name for _, name in seen].index("token")


async def test_client_disconnect_cancels_the_model_and_keeps_the_partial_answer(
    live_chat_server: str, user_factory, anthropic_fake: FakeAnthropicServer, chat_settings
) -> None:
    user = await user_factory()
    anthropic_fake.default = Script(text="word " * 400, token_delay=0.02)
    conversation_id = None
    received = 0
    async with (
        httpx.AsyncClient(base_url=live_chat_server, timeout=30) as client,
        client.stream(
            "POST", "/api/chat/stream", json={"message": "talk a lot"}, headers=user.headers
        ) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("data:") and "conversation_id" in line:
                conversation_id = line.split('"conversation_id": "')[1].split('"')[0]
            if line == "event: token":
                received += 1
                if received == 5:
                    break  # leaving the block closes the connection
    assert conversation_id
    # The app notices, cancels the upstream stream and saves what it had.
    for _ in range(200):
        saved = await messages_of(chat_settings, conversation_id)
        if len(saved) == 2:
            break
        await asyncio.sleep(0.05)
    user_message, assistant = saved
    assert user_message.content == "talk a lot"
    assert assistant.status == "incomplete"
    assert assistant.content.startswith("word word word word word")
    assert "connection closed" in assistant.error
    record = anthropic_fake.streams[-1]
    for _ in range(100):
        if record.ended_at is not None:
            break
        await asyncio.sleep(0.05)
    assert record.client_disconnected and not record.completed
    assert record.tokens_sent < 400


async def test_heartbeat_comments_while_waiting(
    chat_client, chat_app, user_factory, anthropic_fake
) -> None:
    set_settings(chat_app, chat_heartbeat_seconds=0.2)
    user = await user_factory()
    anthropic_fake.default = Script(text="late", first_token_delay=0.8)
    response = await chat_client.post(
        "/api/chat/stream", json={"message": "hi"}, headers=user.headers
    )
    assert ": ping" in response.text
    assert tokens(parse_sse(response.text)) == "late"


# --- faults ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("script", "kind", "status", "partial"),
    [
        (Script(failure="rate_limit"), "rate_limited", "failed", ""),
        (Script(failure="overloaded"), "overloaded", "failed", ""),
        (Script(failure="server_error"), "unavailable", "failed", ""),
        (Script(failure="hang", hang_seconds=5), "timeout", "failed", ""),
        (
            Script(text="alpha beta gamma delta", failure="midstream_error", fail_after_tokens=2),
            "stream_interrupted",
            "incomplete",
            "alpha beta ",
        ),
        (
            Script(text="alpha beta gamma delta", failure="midstream_stall", hang_seconds=5),
            "timeout",
            "incomplete",
            "alpha beta gamma ",
        ),
    ],
    ids=["429", "529", "500", "hang", "error-event", "stall"],
)
async def test_each_fault_gives_a_clear_error_and_loses_nothing(
    chat_client,
    chat_app,
    user_factory,
    anthropic_fake,
    chat_settings,
    script,
    kind,
    status,
    partial,
) -> None:
    set_settings(chat_app, chat_timeout_seconds=0.4, chat_max_retries=1)
    user = await user_factory()
    anthropic_fake.default = script
    events = await stream_chat(chat_client, user.headers, message="Will this work?")

    error = event(events, "error")
    assert error["kind"].startswith(kind)
    assert error["retryable"] is True
    assert len(error["message"]) > 20 and "again" in error["message"]
    assert tokens(events) == partial
    done = event(events, "done")
    assert done["status"] == status
    assert names(events)[-1] == "done"

    saved = await messages_of(chat_settings, event(events, "conversation")["conversation_id"])
    assert [(m.role, m.content) for m in saved] == [
        ("user", "Will this work?"),
        ("assistant", partial),
    ]
    assert saved[1].status == status and saved[1].error == error["message"]
    assert str(saved[1].id) == done["message_id"]
    # Retried only when no text had gone out yet.
    assert len(anthropic_fake.requests) == (1 if partial else 2)


async def test_a_failure_before_the_first_token_is_retried(
    chat_client, user_factory, anthropic_fake
) -> None:
    user = await user_factory()
    anthropic_fake.script(Script(failure="overloaded"))
    anthropic_fake.default = Script(text="Worked on the second try.")
    events = await stream_chat(chat_client, user.headers, message="again?")
    assert "error" not in names(events)
    assert tokens(events) == "Worked on the second try."
    assert event(events, "done")["status"] == "complete"
    assert len(anthropic_fake.requests) == 2


async def test_whole_answer_endpoint_reports_a_failure(
    chat_client, user_factory, anthropic_fake
) -> None:
    user = await user_factory()
    anthropic_fake.default = Script(failure="rate_limit")
    response = await chat_client.post("/api/chat", json={"message": "x"}, headers=user.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["error"]["kind"] == "rate_limited" and body["error"]["retryable"] is True
    assert body["message"]["status"] == "failed"


# --- concurrency -------------------------------------------------------------------------
async def test_two_messages_at_once_to_one_conversation_are_both_saved_in_order(
    chat_client, user_factory, anthropic_fake, chat_settings
) -> None:
    user = await user_factory()
    anthropic_fake.script(Script(text="first answer"))
    first = await stream_chat(chat_client, user.headers, message="first")
    conversation_id = event(first, "conversation")["conversation_id"]
    anthropic_fake.default = Script(text="a slow answer", token_delay=0.1)
    second, third = await asyncio.gather(
        stream_chat(chat_client, user.headers, message="second", conversation_id=conversation_id),
        stream_chat(chat_client, user.headers, message="third", conversation_id=conversation_id),
    )
    assert event(second, "done")["status"] == event(third, "done")["status"] == "complete"
    saved = await messages_of(chat_settings, conversation_id)
    assert [m.position for m in saved] == [1, 2, 3, 4, 5, 6]
    assert [m.role for m in saved] == ["user", "assistant"] * 3
    assert {saved[2].content, saved[4].content} == {"second", "third"}
    # Answered one after the other: the later question's prompt holds the earlier turn.
    first_done, later = anthropic_fake.requests[-2:]
    assert later.messages[-3:-1] == [
        {"role": "user", "content": first_done.messages[-1]["content"]},
        {"role": "assistant", "content": "a slow answer"},
    ]
    ids = {event(second, "done")["message_id"], event(third, "done")["message_id"]}
    assert ids == {str(saved[3].id), str(saved[5].id)}


# --- offline mode ------------------------------------------------------------------------
async def test_offline_mode_quotes_passages_with_citations(
    offline_client, user_factory, settings, anthropic_fake
) -> None:
    user = await user_factory()
    project = await index_project(offline_client, user.headers, settings)
    events = await stream_chat(
        offline_client,
        user.headers,
        message="How long do refunds take?",
        project_id=str(project.id),
    )
    answer = tokens(events)
    assert answer.startswith(OFFLINE_LABEL)
    assert "[1]" in answer and "refund-policy.pdf" in answer
    assert event(events, "usage")["offline"] is True
    assert 1 in event(events, "done")["cited"]
    assert anthropic_fake.requests == []  # no model was called
    reloaded = await offline_client.get(
        f"/api/conversations/{event(events, 'conversation')['conversation_id']}",
        headers=user.headers,
    )
    assistant = reloaded.json()["messages"][1]
    assert assistant["offline"] is True and assistant["model"] is None


# --- bad input ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"message": ""}, "message"),
        ({"message": "   "}, "message"),
        ({"message": "x" * 8001}, "message"),
        ({"message": "hi", "max_context_chunks": 0}, "max_context_chunks"),
        ({"message": "hi", "max_context_chunks": 21}, "max_context_chunks"),
        ({"message": "hi", "min_similarity": 1.5}, "min_similarity"),
        ({"message": "hi", "temperature": -0.1}, "temperature"),
        ({"message": "hi", "model": "gpt-4"}, "model"),
        ({"message": "hi", "project_id": "not-a-uuid"}, "project_id"),
        ({}, "message"),
    ],
)
@pytest.mark.parametrize("path", ["/api/chat/stream", "/api/chat"])
async def test_bad_input_is_422_naming_the_field(
    chat_client, user_factory, body, field, path
) -> None:
    user = await user_factory()
    response = await chat_client.post(path, json=body, headers=user.headers)
    assert response.status_code == 422, response.text
    assert any(error["loc"][-1] == field for error in response.json()["detail"])


async def test_foreign_or_unknown_ids_are_404(
    chat_client, user_factory, anthropic_fake, chat_settings
) -> None:
    owner = await user_factory()
    stranger = await user_factory()
    project = await index_project(chat_client, owner.headers, chat_settings)
    events = await stream_chat(
        chat_client, owner.headers, message="mine", project_id=str(project.id)
    )
    conversation_id = event(events, "conversation")["conversation_id"]
    requests_before = len(anthropic_fake.requests)
    for body in (
        {"message": "x", "conversation_id": conversation_id},
        {"message": "x", "project_id": str(project.id)},
        {"message": "x", "conversation_id": str(uuid.uuid4())},
        {"message": "x", "project_id": str(uuid.uuid4())},
    ):
        for path in ("/api/chat/stream", "/api/chat"):
            response = await chat_client.post(path, json=body, headers=stranger.headers)
            assert response.status_code == 404, (path, body, response.text)
    assert len(anthropic_fake.requests) == requests_before
    assert len(await messages_of(chat_settings, conversation_id)) == 2


async def test_a_project_deleted_before_the_question_is_saved_leaves_nothing(
    chat_client, user_factory, anthropic_fake, chat_settings
) -> None:
    """A new conversation is saved with its first question; if the project went away
    in between, the turn says so and writes nothing (and asks no model)."""
    user = await user_factory()
    project = await index_project(chat_client, user.headers, chat_settings)
    request = ChatRequest(message="Anything left?", project_id=project.id)
    maker = get_sessionmaker(chat_settings)
    async with maker() as session:
        conversation = await chat_service.open_conversation(session, user.id, request)
    deleted = await chat_client.delete(f"/api/projects/{project.id}", headers=user.headers)
    assert deleted.status_code == 204
    requests_before = len(anthropic_fake.requests)
    turn = chat_service.ChatTurn(
        settings=chat_settings,
        sessionmaker=maker,
        model=get_chat_model(chat_settings),
        user_id=user.id,
        conversation=conversation,
        request=request,
    )
    events: Events = []

    async def emit(name: str, data: dict) -> None:
        events.append((name, data))

    await turn.run(emit)
    assert events == [
        ("error", {"message": chat_service.PROJECT_GONE, "retryable": False, "kind": "not_found"})
    ]
    async with maker() as session:
        assert await session.get(Conversation, conversation.id) is None
    assert await messages_of(chat_settings, str(conversation.id)) == []
    assert len(anthropic_fake.requests) == requests_before


async def test_requires_login(chat_client) -> None:
    response = await chat_client.post("/api/chat/stream", json={"message": "hi"})
    assert response.status_code == 401

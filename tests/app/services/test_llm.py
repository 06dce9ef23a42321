"""The Claude client, the prompt builder and the offline model, against the local stand-in
(a real HTTP server speaking Anthropic's protocol, driven by the real SDK)."""

from __future__ import annotations

import asyncio

import pytest

from app.services.llm.base import (
    LLMError,
    LLMOverloaded,
    LLMRateLimited,
    LLMStreamInterrupted,
    LLMTimeout,
    LLMUnavailable,
    ModelRequest,
    TextDelta,
    Usage,
    collect,
)
from app.services.llm.claude import AnthropicChatModel
from app.services.llm.offline import OFFLINE_LABEL, OfflineChatModel, best_excerpt
from app.services.passages import Passage
from app.services.prompt import (
    HistoryMessage,
    build_prompt,
    cited_numbers,
    estimate_tokens,
)
from tests.fakes.anthropic_server import FakeAnthropicServer, Script

_open_models: list[AnthropicChatModel] = []


def _model(fake: FakeAnthropicServer, **options) -> AnthropicChatModel:
    defaults = {"timeout_seconds": 2.0, "max_retries": 2, "retry_backoff_seconds": 0.01}
    model = AnthropicChatModel(api_key="sk-test", base_url=fake.base_url, **{**defaults, **options})
    _open_models.append(model)
    return model


@pytest.fixture(autouse=True)
async def _close_models():
    """Each test's clients close their HTTP connections in the test's own event loop."""
    yield
    while _open_models:
        await _open_models.pop().aclose()


def _request(**overrides) -> ModelRequest:
    values = {
        "system": "You are a test.",
        "messages": [{"role": "user", "content": "Hello?"}],
        "model": "claude-test",
        "max_tokens": 100,
    }
    return ModelRequest(**{**values, **overrides})


async def _drain(model, request) -> tuple[list[str], Usage | None]:
    texts: list[str] = []
    usage = None
    async for event in model.stream(request):
        if isinstance(event, TextDelta):
            texts.append(event.text)
        else:
            usage = event
    return texts, usage


async def _text_before_error(model, error_type: type[LLMError]) -> tuple[str, LLMError]:
    """Stream until the model raises ``error_type``; the text shown before, and the error."""
    texts: list[str] = []
    with pytest.raises(error_type) as caught:
        async for event in model.stream(_request()):
            if isinstance(event, TextDelta):
                texts.append(event.text)
    return "".join(texts), caught.value


# --- streaming ---------------------------------------------------------------------------
async def test_streams_text_in_pieces_then_usage(anthropic_fake: FakeAnthropicServer) -> None:
    anthropic_fake.default = Script(text="The refund period is 30 days [1].")
    texts, usage = await _drain(_model(anthropic_fake), _request(temperature=0.7))
    assert "".join(texts) == "The refund period is 30 days [1]."
    assert len(texts) > 3
    assert usage is not None and usage.output_tokens == len(texts) and usage.input_tokens > 0
    assert usage.stop_reason == "end_turn"
    sent = anthropic_fake.requests[0]
    assert sent.body["stream"] is True
    assert sent.body["model"] == "claude-test"
    assert sent.body["temperature"] == 0.7
    assert sent.system == "You are a test."
    assert sent.headers["x-api-key"] == "sk-test"


async def test_collect_returns_the_whole_answer(anthropic_fake: FakeAnthropicServer) -> None:
    anthropic_fake.default = Script(text="All of it.")
    text, usage = await collect(_model(anthropic_fake), _request())
    assert text == "All of it."
    assert usage.output_tokens == 3


# --- failures and retries ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("failure", "error_class"),
    [
        ("rate_limit", LLMRateLimited),
        ("overloaded", LLMOverloaded),
        ("server_error", LLMUnavailable),
    ],
)
async def test_http_errors_become_typed_retryable_errors(
    anthropic_fake: FakeAnthropicServer, failure, error_class
) -> None:
    anthropic_fake.default = Script(failure=failure)
    anthropic_fake.default.hang_seconds = 0
    with pytest.raises(error_class) as caught:
        await _drain(_model(anthropic_fake, max_retries=2, max_retry_wait_seconds=0.05), _request())
    assert caught.value.retryable is True
    assert "try again" in caught.value.message.lower() or "wait" in caught.value.message.lower()
    assert len(anthropic_fake.requests) == 3  # the first try and two retries


async def test_retry_before_first_token_succeeds(anthropic_fake: FakeAnthropicServer) -> None:
    anthropic_fake.script(Script(failure="overloaded"), Script(failure="rate_limit"))
    anthropic_fake.default = Script(text="Second time lucky.")
    texts, _ = await _drain(_model(anthropic_fake, max_retry_wait_seconds=0.05), _request())
    assert "".join(texts) == "Second time lucky."
    assert len(anthropic_fake.requests) == 3


async def test_hang_times_out(anthropic_fake: FakeAnthropicServer) -> None:
    anthropic_fake.default = Script(failure="hang", hang_seconds=10)
    with pytest.raises(LLMTimeout) as caught:
        await _drain(_model(anthropic_fake, timeout_seconds=0.3, max_retries=1), _request())
    assert caught.value.retryable
    assert len(anthropic_fake.requests) == 2


async def test_error_event_mid_stream_is_not_retried(anthropic_fake: FakeAnthropicServer) -> None:
    """`event: error` after some text: the SDK raises APIStatusError(200); no retry, since
    the user already saw text; the caller keeps the partial answer."""
    anthropic_fake.default = Script(text="one two three four five six", failure="midstream_error")
    text, error = await _text_before_error(_model(anthropic_fake), LLMStreamInterrupted)
    assert text == "one two three "
    assert "overloaded" in error.message and error.retryable
    assert len(anthropic_fake.requests) == 1


async def test_error_event_before_any_text_is_retried(anthropic_fake: FakeAnthropicServer) -> None:
    anthropic_fake.script(
        Script(text="never shown", failure="midstream_error", fail_after_tokens=0)
    )
    anthropic_fake.default = Script(text="fine")
    texts, _ = await _drain(_model(anthropic_fake), _request())
    assert texts == ["fine"]
    assert len(anthropic_fake.requests) == 2


async def test_stall_mid_stream_times_out(anthropic_fake: FakeAnthropicServer) -> None:
    anthropic_fake.default = Script(text="a b c d e f", failure="midstream_stall", hang_seconds=10)
    model = _model(anthropic_fake, timeout_seconds=0.3)
    text, _ = await _text_before_error(model, LLMTimeout)
    assert text == "a b c "
    assert len(anthropic_fake.requests) == 1


async def test_connection_dropped_mid_stream_is_a_clear_error(
    anthropic_fake: FakeAnthropicServer,
) -> None:
    anthropic_fake.default = Script(text="a b c d e f", failure="midstream_drop")
    text, error = await _text_before_error(_model(anthropic_fake), LLMUnavailable)
    assert text == "a b c "
    assert "broke off" in error.message and error.retryable
    assert len(anthropic_fake.requests) == 1  # text was shown: not retried


async def test_stopping_early_closes_the_upstream_stream(
    anthropic_fake: FakeAnthropicServer,
) -> None:
    anthropic_fake.default = Script(text="word " * 200, token_delay=0.01)
    stream = _model(anthropic_fake).stream(_request())
    async for event in stream:
        if isinstance(event, TextDelta):
            break
    await stream.aclose()
    for _ in range(100):
        if anthropic_fake.streams[0].ended_at is not None:
            break
        await asyncio.sleep(0.02)
    record = anthropic_fake.streams[0]
    assert record.client_disconnected and not record.completed
    assert record.tokens_sent < 200


# --- prompt ------------------------------------------------------------------------------
def _passages(n: int, words: int = 20) -> list[Passage]:
    return [
        Passage(
            number=i,
            text=" ".join(f"word{i}" for _ in range(words)),
            document_id=None,
            document_name=f"doc{i}.pdf",
            page=i,
            heading="Intro" if i == 1 else None,
            score=1 - i / 100,
        )
        for i in range(1, n + 1)
    ]


def test_prompt_numbers_passages_and_keeps_last_messages() -> None:
    history = []
    for i in range(12):
        history.append(HistoryMessage("user", f"question {i}"))
        history.append(HistoryMessage("assistant", f"answer {i}"))
    prompt = build_prompt(
        "new question",
        passages=_passages(3),
        history=history,
        history_limit=10,
        token_budget=8000,
        searched=True,
    )
    assert "cite" in prompt.system and "doc1.pdf" not in prompt.system
    assert [m["content"] for m in prompt.messages[:2]] == ["question 7", "answer 7"]
    assert len(prompt.messages) == 11
    last = prompt.messages[-1]["content"]
    assert '[1] doc1.pdf, page 1, "Intro"\nword1' in last
    assert "[3] doc3.pdf, page 3\n" in last
    assert last.endswith("<question>\nnew question\n</question>")


def test_prompt_trims_history_then_passages_to_the_budget() -> None:
    history = [HistoryMessage("user", "x" * 4000), HistoryMessage("assistant", "y" * 4000)]
    prompt = build_prompt(
        "q",
        passages=_passages(50, words=100),
        history=history,
        history_limit=10,
        token_budget=1500,
        searched=True,
    )
    assert prompt.estimated_tokens <= 1500
    assert 1 <= len(prompt.passages) < 50
    assert prompt.passages[0].number == 1  # the best ones are kept
    [turn] = prompt.messages  # no history left
    assert turn["role"] == "user" and turn["content"].endswith("<question>\nq\n</question>")


def test_prompt_repairs_alternation_after_failed_answers() -> None:
    history = [
        HistoryMessage("assistant", "stray"),
        HistoryMessage("user", "first"),
        HistoryMessage("assistant", "", incomplete=True),  # failed, no text
        HistoryMessage("user", "second"),
        HistoryMessage("assistant", "partial", incomplete=True),
    ]
    prompt = build_prompt(
        "third", passages=[], history=history, history_limit=10, token_budget=8000, searched=False
    )
    roles = [m["role"] for m in prompt.messages]
    assert roles == ["user", "assistant", "user"]
    assert prompt.messages[0]["content"] == "first\n\nsecond"
    assert "interrupted" in prompt.messages[1]["content"]
    assert "No documents were searched" in prompt.system


def test_cited_numbers_only_counts_existing_passages() -> None:
    assert cited_numbers("a [1] b [3][2] c [9] [x]", available=3) == {1, 2, 3}
    assert estimate_tokens("abcd" * 10) == 11


# --- offline mode ------------------------------------------------------------------------
async def test_offline_answer_quotes_best_sentences_with_citations() -> None:
    passages = [
        Passage(
            1,
            "Shipping is free. Refunds are possible within 30 days of delivery. Call us.",
            None,
            "policy.pdf",
            page=2,
        ),
        Passage(2, "Our office is in Lyon.", None, "about.md", heading="Contact"),
    ]
    text, usage = await collect(
        OfflineChatModel(), _request(passages=passages, question="How many days for refunds?")
    )
    assert text.startswith(OFFLINE_LABEL)
    assert "> Refunds are possible within 30 days of delivery." in text
    assert "[1]" in text and "[2]" in text
    assert "policy.pdf, page 2" in text
    assert usage.stop_reason == "offline"


async def test_offline_answer_without_passages_says_so() -> None:
    text, _ = await collect(OfflineChatModel(), _request(question="anything"))
    assert "Offline mode" in text and "No passage" in text


def test_best_excerpt_is_bounded() -> None:
    excerpt = best_excerpt("Alpha beta. " * 200, "beta", max_chars=100)
    assert len(excerpt) <= 100

"""The Anthropic stand-in speaks the Messages API wire protocol (checked on raw HTTP, so
the chat tests that rely on it test the real SDK against the real event sequence)."""

from __future__ import annotations

import httpx

from app.api.sse import parse_sse
from tests.fakes.anthropic_server import FakeAnthropicServer, Script, echo_reply

HEADERS = {"x-api-key": "sk-test", "anthropic-version": "2023-06-01"}
BODY = {"model": "claude-x", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


async def test_stream_follows_the_documented_event_sequence(
    anthropic_fake: FakeAnthropicServer,
) -> None:
    anthropic_fake.default = Script(text="Hello there, friend.")
    async with httpx.AsyncClient(base_url=anthropic_fake.base_url) as client:
        response = await client.post("/v1/messages", json={**BODY, "stream": True}, headers=HEADERS)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == (
        "Hello there, friend."
    )
    start = events[0][1]["message"]
    assert start["role"] == "assistant" and start["usage"]["input_tokens"] > 0
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert events[-2][1]["usage"]["output_tokens"] == 3
    assert anthropic_fake.streams[0].completed


async def test_non_streaming_message_and_error_envelopes(
    anthropic_fake: FakeAnthropicServer,
) -> None:
    anthropic_fake.default = Script(text="Whole.")
    anthropic_fake.script(Script(failure="rate_limit"), Script(failure="overloaded"))
    async with httpx.AsyncClient(base_url=anthropic_fake.base_url) as client:
        limited = await client.post("/v1/messages", json=BODY, headers=HEADERS)
        overloaded = await client.post("/v1/messages", json=BODY, headers=HEADERS)
        ok = await client.post("/v1/messages", json=BODY, headers=HEADERS)
        anonymous = await client.post("/v1/messages", json=BODY)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    assert limited.json() == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": limited.json()["error"]["message"]},
    }
    assert overloaded.status_code == 529
    assert overloaded.json()["error"]["type"] == "overloaded_error"
    message = ok.json()
    assert message["type"] == "message" and message["content"] == [
        {"type": "text", "text": "Whole."}
    ]
    assert message["stop_reason"] == "end_turn"
    assert anonymous.status_code == 401
    assert [r.body["model"] for r in anthropic_fake.requests] == ["claude-x"] * 4


async def test_midstream_error_event(anthropic_fake: FakeAnthropicServer) -> None:
    anthropic_fake.default = Script(text="a b c d", failure="midstream_error", fail_after_tokens=1)
    async with httpx.AsyncClient(base_url=anthropic_fake.base_url) as client:
        response = await client.post("/v1/messages", json={**BODY, "stream": True}, headers=HEADERS)
    events = parse_sse(response.text)
    assert [name for name, _ in events][-2:] == ["content_block_delta", "error"]
    assert events[-1][1]["error"]["type"] == "overloaded_error"


def test_echo_reply_cites_each_numbered_passage() -> None:
    system = "Rules.\n\nPassages:\n[1] a.pdf, page 2\nAlpha text here.\n\n[2] b.md\nBeta text."
    assert echo_reply(system) == (
        "Passage 1 says: Alpha text here. [1]. Passage 2 says: Beta text. [2]."
    )

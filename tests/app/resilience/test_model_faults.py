"""The model failing in every way it can while many answers stream at once.

A real uvicorn server (``live_chat_server``) takes concurrent streams from several users;
the Anthropic stand-in answers each question by its marker: some fail (HTTP 429, 529,
500, a hang, an ``event: error`` mid-stream, a dropped connection mid-stream, a stall
mid-stream), the others stream normally. Every failed stream must end with an ``error``
event (retryable, a sentence a person can act on) and ``done``; what had arrived is
kept as an incomplete answer; the healthy streams of other users are untouched.
"""

from __future__ import annotations

import asyncio

import httpx

from app.api.sse import parse_sse
from app.core.config import Settings
from tests.app.utils.chat import messages_of
from tests.fakes.anthropic_server import FakeAnthropicServer, Script

HEALTHY_TEXT = "one two three four five six seven eight nine ten"
PARTIAL_TEXT = "alpha beta gamma delta epsilon"

# marker -> (script, the error kind's prefix, saved status, text the user saw)
FAULTS: dict[str, tuple[Script, str, str, str]] = {
    "fault-429": (Script(failure="rate_limit"), "rate_limited", "failed", ""),
    "fault-529": (Script(failure="overloaded"), "overloaded", "failed", ""),
    "fault-500": (Script(failure="server_error"), "unavailable", "failed", ""),
    "fault-hang": (Script(failure="hang", hang_seconds=5), "timeout", "failed", ""),
    "fault-error-event": (
        Script(text=PARTIAL_TEXT, failure="midstream_error", fail_after_tokens=2),
        "stream_interrupted",
        "incomplete",
        "alpha beta ",
    ),
    "fault-drop": (
        Script(text=PARTIAL_TEXT, failure="midstream_drop", fail_after_tokens=3),
        "unavailable",
        "incomplete",
        "alpha beta gamma ",
    ),
    "fault-stall": (
        Script(text=PARTIAL_TEXT, failure="midstream_stall", fail_after_tokens=1, hang_seconds=5),
        "timeout",
        "incomplete",
        "alpha ",
    ),
}
HEALTHY_PER_FAULT = 2


async def test_every_model_failure_ends_its_own_stream_cleanly_and_spares_the_others(
    live_chat_server: str,
    chat_app,
    user_factory,
    anthropic_fake: FakeAnthropicServer,
    chat_settings: Settings,
) -> None:
    chat_app.state.settings = chat_app.state.settings.model_copy(
        update={"chat_timeout_seconds": 0.5, "chat_max_retries": 1}
    )
    for marker, (script, *_rest) in FAULTS.items():
        anthropic_fake.route(marker, script)
    anthropic_fake.default = Script(text=HEALTHY_TEXT, token_delay=0.01)

    faulty_user = await user_factory()
    healthy_users = [await user_factory() for _ in range(3)]
    questions: list[tuple[str, dict[str, str]]] = [
        (f"Question {marker}?", faulty_user.headers) for marker in FAULTS
    ]
    questions += [
        (f"Healthy question {i}?", healthy_users[i % len(healthy_users)].headers)
        for i in range(HEALTHY_PER_FAULT * len(FAULTS))
    ]

    async with httpx.AsyncClient(base_url=live_chat_server, timeout=60) as client:

        async def ask(message: str, headers: dict[str, str]) -> list[tuple[str, dict]]:
            response = await client.post(
                "/api/chat/stream", json={"message": message}, headers=headers
            )
            assert response.status_code == 200, response.text
            return parse_sse(response.text)

        results = await asyncio.gather(*(ask(m, h) for m, h in questions))

    for (message, _headers), events in zip(questions, results, strict=True):
        names = [name for name, _ in events]
        assert names[0] == "conversation" and names[-1] == "done", (message, names)
        text = "".join(data["text"] for name, data in events if name == "token")
        done = events[-1][1]
        saved = await messages_of(chat_settings, events[0][1]["conversation_id"])
        assert [m.role for m in saved] == ["user", "assistant"], message
        marker = message.removeprefix("Question ").removesuffix("?")
        if marker not in FAULTS:
            assert "error" not in names, (message, events)
            assert text == HEALTHY_TEXT and done["status"] == "complete"
            assert saved[1].content == HEALTHY_TEXT and saved[1].status == "complete"
            continue
        _script, kind, status, partial = FAULTS[marker]
        [error] = [data for name, data in events if name == "error"]
        assert error["kind"].startswith(kind), (marker, error)
        assert error["retryable"] is True, (marker, error)
        # A sentence for a person, not an exception's text.
        assert error["message"].endswith(".") and len(error["message"]) > 30, error
        assert "Traceback" not in error["message"] and "Exception" not in error["message"]
        assert text == partial, marker
        assert done["status"] == status, marker
        assert saved[1].content == partial and saved[1].status == status, marker
        assert saved[1].error == error["message"]

"""JSON logs with a request id, and nothing a person wrote or a secret in them."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy import text

from app.api.deps import SessionDep
from app.core.logging import JsonFormatter
from app.main import create_app
from tests.fakes.anthropic_server import FakeAnthropicServer, Script

SECRET_EMAIL = "log.person@example.org"
SECRET_PASSWORD = "log-password-never-logged-77"
SECRET_MESSAGE = "my private medical question"
SECRET_QUERY = "whispered-search-term"


@pytest.fixture
def logs() -> Iterator[Callable[[], list[str]]]:
    """Everything the process logs at INFO and above so far, formatted as in production."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root, app_logger = logging.getLogger(), logging.getLogger("app")
    levels = root.level, app_logger.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # production's level (the tests' settings say WARNING)
    app_logger.setLevel(logging.INFO)
    try:
        yield lambda: stream.getvalue().splitlines()
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        app_logger.setLevel(levels[1])


def records(lines: list[str]) -> list[dict]:
    return [json.loads(line) for line in lines]


def app_lines(lines: list[str]) -> list[str]:
    """Leave out the test client's own request lines (httpx logs them at INFO)."""
    clients = ("http://t/", "http://testserver/")
    return [
        line
        for line in lines
        if '"HTTP Request: ' not in line or not any(base in line for base in clients)
    ]


async def test_request_id_is_taken_from_nginx_or_made_and_echoed(client: httpx.AsyncClient):
    nginx_id = "0123456789abcdef0123456789abcdef"  # nginx's $request_id: 32 hex digits
    response = await client.get("/healthz", headers={"X-Request-ID": nginx_id})
    assert response.headers["x-request-id"] == nginx_id

    for bad in ("x", "a" * 200, "spaces are not allowed", "new\nline"):
        response = await client.get("/healthz", headers={"X-Request-ID": bad})
        assert response.headers["x-request-id"] != bad
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])

    first = (await client.get("/healthz")).headers["x-request-id"]
    second = (await client.get("/healthz")).headers["x-request-id"]
    assert first != second


async def test_each_request_logs_one_json_line_with_route_template(
    client: httpx.AsyncClient, user_factory, logs
):
    user = await user_factory()
    response = await client.get(
        f"/api/conversations/search?q={SECRET_QUERY}",
        headers={**user.headers, "X-Request-ID": "req-12345678"},
    )
    assert response.status_code == 200
    log_lines = logs()
    access = [r for r in records(log_lines) if r["logger"] == "app.access"]
    line = next(r for r in access if r.get("request_id") == "req-12345678")
    assert line == {
        "time": line["time"],
        "level": "INFO",
        "logger": "app.access",
        "message": "request",
        "request_id": "req-12345678",
        "method": "GET",
        "route": "/api/conversations/search",
        "status": 200,
        "duration_ms": line["duration_ms"],
    }
    assert SECRET_QUERY not in "\n".join(app_lines(log_lines))


async def test_logs_hold_no_secrets_or_message_text(
    chat_settings, anthropic_fake: FakeAnthropicServer, logs
):
    app = create_app(chat_settings.model_copy(update={"log_level": "INFO"}))

    @app.get("/api/sql-boom")
    async def sql_boom(session: SessionDep) -> None:
        await session.execute(text("SELECT CAST(:value AS integer)"), {"value": SECRET_EMAIL})

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        credentials = {"email": SECRET_EMAIL, "password": SECRET_PASSWORD}
        assert (await client.post("/api/auth/register", json=credentials)).status_code == 202
        tokens = (await client.post("/api/auth/login", json=credentials)).json()
        wrong = {"email": SECRET_EMAIL, "password": SECRET_PASSWORD + "x"}
        assert (await client.post("/api/auth/login", json=wrong)).status_code == 401
        refreshed = await client.post(
            "/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refreshed.status_code == 200
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        anthropic_fake.default = Script(text="An answer.")
        answer = await client.post(
            "/api/chat/stream", json={"message": SECRET_MESSAGE}, headers=headers
        )
        assert "event: done" in answer.text
        anthropic_fake.default = Script(failure="midstream_error")
        await client.post("/api/chat/stream", json={"message": SECRET_MESSAGE}, headers=headers)
        await client.get(f"/api/conversations/search?q={SECRET_QUERY}", headers=headers)
        assert (await client.get("/api/sql-boom")).status_code == 500

    log_lines = app_lines(logs())
    logged = "\n".join(log_lines)
    assert any(r["logger"] == "app.access" for r in records(log_lines))
    assert "parameters hidden" in logged  # the SQL error was logged, without its values
    for secret in (
        SECRET_EMAIL,
        SECRET_PASSWORD,
        SECRET_MESSAGE,
        SECRET_QUERY,
        tokens["access_token"],
        tokens["refresh_token"],
    ):
        assert secret not in logged, f"{secret!r} appears in the logs"

"""Request bodies are limited before they are read: large bodies get 413 before auth."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from app.core.config import Settings
from app.main import create_app
from tests.app.utils.clients import app_client

LIMIT_KB = 16
CHUNK = b"x" * 1024


@pytest.fixture
async def small_limit_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update={"max_request_body_kb": LIMIT_KB}))
    async with app_client(app) as c:
        yield c


def _json_string_body(size: int) -> bytes:
    return b'{"name": "' + b"a" * size + b'"}'


async def test_large_unauthenticated_json_is_413_not_401(client, settings):
    body = _json_string_body(settings.max_request_body_bytes + 1)
    response = await client.post(
        "/api/projects", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert "too large" in response.json()["detail"]


async def test_body_within_the_limit_still_reaches_auth(client):
    response = await client.post("/api/projects", content=_json_string_body(1000))
    assert response.status_code == 401


async def test_chunked_body_is_cut_off_at_the_limit(small_limit_client):
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(10_000):  # 10 MB if nobody stops reading
            sent += 1
            yield CHUNK

    response = await small_limit_client.post(
        "/api/projects", content=endless(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413, response.text
    # The app stopped reading right after the limit: the rest was never pulled.
    assert sent <= LIMIT_KB + 2


async def test_authenticated_large_body_is_413_too(small_limit_client):
    response = await small_limit_client.post(
        "/api/auth/register",
        content=b'{"email": "a@example.com", "password": "' + b"p" * 20_000 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413


async def test_upload_route_has_the_large_limit(small_limit_client, tmp_path):
    response = await small_limit_client.post(
        "/api/auth/register", json={"email": "u@example.com", "password": "long enough pw"}
    )
    assert response.is_success, response.text
    tokens = (
        await small_limit_client.post(
            "/api/auth/login", json={"email": "u@example.com", "password": "long enough pw"}
        )
    ).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    project = await small_limit_client.post("/api/projects", json={"name": "P"}, headers=headers)
    text = ("A line of plain text about bees and their hives.\n" * 2000).encode()  # ~100 KB
    assert len(text) > LIMIT_KB * 1024
    response = await small_limit_client.post(
        f"/api/projects/{project.json()['id']}/documents",
        files={"files": ("bees.txt", text, "text/plain")},
        headers=headers,
    )
    assert response.status_code == 202, response.text

"""Fixtures for the chat tests (loaded as a pytest plugin from tests/app/conftest.py).

anthropic_fake   the local Anthropic stand-in (tests/fakes/anthropic_server.py), one
                 server per test session, scripts and records reset before each test.
chat_settings    the test Settings pointed at the stand-in (ANTHROPIC_API_KEY set,
                 ANTHROPIC_BASE_URL = the stand-in), with fast retries and timeouts.
chat_app         create_app(chat_settings).
chat_client      an httpx.AsyncClient on chat_app (in-process, lifespan run).
offline_client   an httpx.AsyncClient on an app with no API key (offline mode).
live_chat_server a real uvicorn server on 127.0.0.1 running chat_app, for tests that
                 must see bytes arrive over a socket as they are sent; yields its URL.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from app.core.config import Settings
from app.main import create_app
from tests.fakes.anthropic_server import FakeAnthropicServer

FAKE_API_KEY = "sk-ant-test-key"


@pytest.fixture(scope="session")
def _anthropic_server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as server:
        yield server


@pytest.fixture
def anthropic_fake(_anthropic_server: FakeAnthropicServer) -> FakeAnthropicServer:
    _anthropic_server.reset()
    return _anthropic_server


@pytest.fixture
def chat_settings(settings: Settings, anthropic_fake: FakeAnthropicServer) -> Settings:
    return settings.model_copy(
        update={
            "anthropic_api_key": SecretStr(FAKE_API_KEY),
            "anthropic_base_url": anthropic_fake.base_url,
            "chat_retry_backoff_seconds": 0.01,
            "chat_timeout_seconds": 2.0,
        }
    )


@pytest.fixture
def chat_app(chat_settings: Settings):
    return create_app(chat_settings)


@pytest.fixture
async def chat_client(chat_app) -> AsyncIterator[httpx.AsyncClient]:
    async with chat_app.router.lifespan_context(chat_app):
        transport = httpx.ASGITransport(app=chat_app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", timeout=30
        ) as client:
            yield client


@pytest.fixture
async def offline_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    offline_app = create_app(settings.model_copy(update={"anthropic_api_key": None}))
    async with offline_app.router.lifespan_context(offline_app):
        transport = httpx.ASGITransport(app=offline_app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", timeout=30
        ) as client:
            yield client


@pytest.fixture
async def live_chat_server(chat_app) -> AsyncIterator[str]:
    """chat_app behind a real uvicorn on loopback, in this event loop (the DB pool's)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(chat_app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)

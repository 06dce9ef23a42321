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
import hashlib
import json
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from sqlalchemy import text

from app.core.config import Settings
from app.core.db import get_sessionmaker
from app.main import create_app
from app.models.document import Document
from app.services import embeddings
from app.services.retrieval import vector_literal
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


# --- a project with indexed passages -----------------------------------------------------
# Three short "documents" whose passages the retrieval finds for the questions below.
CORPUS = {
    "refund-policy.pdf": [
        (
            1,
            "Refunds",
            "Customers may ask for a refund within 30 days of delivery. "
            "Refunds are paid back to the original card within five business days.",
        ),
        (2, "Exchanges", "Exchanges are free of charge for unworn items with their tags."),
    ],
    "shipping.md": [
        (
            None,
            "Delivery times",
            "Standard shipping takes three to five days. "
            "Express shipping arrives the next business day if ordered before noon.",
        ),
    ],
    "lighthouse.txt": [
        (None, None, "The lighthouse keeper climbs 217 steps every evening to light the lamp."),
    ],
}


@dataclass
class IndexedProject:
    id: uuid.UUID
    document_ids: dict[str, uuid.UUID]


async def index_project(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings, name: str = "Shop"
) -> IndexedProject:
    """A project of `headers`' user with CORPUS stored as ready documents and embedded chunks
    (real embeddings from the packaged model, written where the ingestion writes them)."""
    response = await client.post("/api/projects", json={"name": name}, headers=headers)
    assert response.status_code == 201, response.text
    project_id = uuid.UUID(response.json()["id"])
    owner_id = uuid.UUID((await client.get("/api/auth/me", headers=headers)).json()["id"])
    texts = [text for passages in CORPUS.values() for _, _, text in passages]
    vectors = await asyncio.to_thread(embeddings.embed_texts, texts, settings)
    vector_iter = iter(vectors)
    document_ids: dict[str, uuid.UUID] = {}
    async with get_sessionmaker(settings)() as session:
        for filename, passages in CORPUS.items():
            document = Document(
                project_id=project_id,
                owner_id=owner_id,
                filename=filename,
                content_type="text/plain",
                kind="text",
                size_bytes=100,
                sha256=hashlib.sha256(f"{project_id}{filename}".encode()).hexdigest(),
                storage_path=f"{project_id}/{filename}",
                status="ready",
                progress=100,
                chunk_count=len(passages),
            )
            session.add(document)
            await session.flush()
            document_ids[filename] = document.id
            for index, (page, heading, text_) in enumerate(passages):
                metadata = {
                    "project_id": str(project_id),
                    "document_id": str(document.id),
                    "owner_id": str(owner_id),
                    "filename": filename,
                    "page": page,
                    "heading": heading,
                    "chunk_index": index,
                }
                await session.execute(
                    text(
                        "INSERT INTO data_chunks (text, metadata_, node_id, embedding) "
                        "VALUES (:text, CAST(:metadata AS jsonb), :node_id, "
                        "CAST(:embedding AS vector))"
                    ),
                    {
                        "text": text_,
                        "metadata": json.dumps(metadata),
                        "node_id": str(uuid.uuid4()),
                        "embedding": vector_literal(next(vector_iter)),
                    },
                )
        await session.commit()
    return IndexedProject(id=project_id, document_ids=document_ids)

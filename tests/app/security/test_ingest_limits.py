"""Ingestion limits: a document too large to take fails with the reason (instead of
filling memory and the index), and an internal error keeps the only copy of the file."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from app.main import create_app
from app.models.document import Document
from app.services import embeddings
from tests.app.utils.documents import make_project, upload, wait_until_done

LINE = "Bees keep their hive warm by shivering their flight muscles together.\n"


@pytest.fixture
async def small_limits_client(settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        settings.model_copy(update={"ingest_max_characters": 5000, "ingest_max_chunks": 3})
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


async def _ingest(client, user, tmp_path, text: str, name: str = "bees.txt") -> dict:
    project_id = await make_project(client, user)
    path = tmp_path / name
    path.write_text(text)
    [document] = (await upload(client, user, project_id, path)).json()
    return await wait_until_done(client, user, project_id, document["id"])


async def test_too_many_characters_fail_with_the_reason(
    small_limits_client, user_factory, tmp_path
):
    user = await user_factory()
    done = await _ingest(small_limits_client, user, tmp_path, LINE * 100)  # ~7,000 characters
    assert done["status"] == "failed"
    assert "INGEST_MAX_CHARACTERS" in done["error"] and "split it" in done["error"]


async def test_too_many_chunks_fail_with_the_reason(small_limits_client, user_factory, tmp_path):
    user = await user_factory()
    text = "".join(f"# Part {n}\n\n{LINE * 6}\n" for n in range(8))  # < 5,000 characters
    assert len(text) < 5000
    done = await _ingest(small_limits_client, user, tmp_path, text, name="bees.md")
    assert done["status"] == "failed"
    assert "INGEST_MAX_CHUNKS" in done["error"]


async def test_an_internal_error_keeps_the_only_copy_of_the_file(
    client, user_factory, tmp_path, settings, db_session, monkeypatch
):
    user = await user_factory()

    def database_gone(*args, **kwargs):
        raise ConnectionResetError("the embedding step lost its connection")

    monkeypatch.setattr(embeddings, "embed_texts", database_gone)
    done = await _ingest(client, user, tmp_path, LINE * 3)
    assert done["status"] == "failed" and "internal error" in done["error"]
    document = await db_session.get(Document, done["id"])
    stored = settings.uploads_dir / document.storage_path
    assert stored.is_file()  # kept: uploading again retries it

    monkeypatch.undo()
    [again] = (await upload(client, user, str(document.project_id), tmp_path / "bees.txt")).json()
    done = await wait_until_done(client, user, str(document.project_id), again["id"])
    assert done["status"] == "ready"
    assert not stored.exists()  # the failed document's file went with it

"""Restart safety of the background worker, and the ingest/reindex commands."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid

from sqlalchemy import text
from typer.testing import CliRunner

from app.cli import cli
from app.core.db import get_engine
from app.models.document import Document, DocumentStatus
from app.models.project import Project
from app.models.user import User
from app.services.ingestion.worker import IngestWorker, _lock_key
from tests.app.utils import samples


async def _document_in_processing(
    db_session, settings, tmp_path, status: DocumentStatus = DocumentStatus.PROCESSING
) -> Document:
    """A document left 'processing' by a process that died, with a stale chunk."""
    user = User(email=f"{uuid.uuid4().hex}@example.com", password_hash="x")
    db_session.add(user)
    await db_session.flush()
    project = Project(owner_id=user.id, name="P")
    db_session.add(project)
    await db_session.flush()
    source = samples.make_markdown(tmp_path)
    document_id = uuid.uuid4()
    relative = f"{project.id}/{document_id}.md"
    (settings.uploads_dir / str(project.id)).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, settings.uploads_dir / relative)
    document = Document(
        id=document_id,
        project_id=project.id,
        owner_id=user.id,
        filename="guide.md",
        content_type="text/markdown",
        kind="markdown",
        size_bytes=source.stat().st_size,
        sha256=uuid.uuid4().hex * 2,
        storage_path=relative,
        status=status,
        progress=40 if status == DocumentStatus.PROCESSING else 0,
    )
    db_session.add(document)
    await db_session.flush()
    metadata = {"project_id": str(project.id), "document_id": str(document_id)}
    await db_session.execute(
        text("INSERT INTO data_chunks (text, metadata_, node_id) VALUES ('stale', :m, 'old')"),
        {"m": json.dumps(metadata)},
    )
    await db_session.commit()
    return document


async def test_orphans_are_requeued_but_not_live_work(db_session, settings, tmp_path):
    document = await _document_in_processing(db_session, settings, tmp_path)
    engine = get_engine(settings)
    worker = IngestWorker(settings, engine)
    # A live worker (here: another connection) holds the document's lock: left alone.
    async with engine.connect() as other_process:
        await other_process.execute(
            text("SELECT pg_advisory_lock(:k)"), {"k": _lock_key(document.id)}
        )
        assert await worker.requeue_orphans() == 0
        await other_process.execute(
            text("SELECT pg_advisory_unlock(:k)"), {"k": _lock_key(document.id)}
        )
    # Nobody holds it: the process that claimed it is gone, so it goes back to the queue.
    assert await worker.requeue_orphans() == 1
    await db_session.refresh(document)
    assert document.status == DocumentStatus.QUEUED and document.progress == 0


async def test_app_start_resumes_interrupted_documents(app, db_session, settings, tmp_path):
    document = await _document_in_processing(db_session, settings, tmp_path)
    async with app.router.lifespan_context(app):
        worker: IngestWorker = app.state.ingest_worker
        for _ in range(600):
            await db_session.refresh(document)
            if document.status == DocumentStatus.READY:
                break
            worker.notify()
            await asyncio.sleep(0.1)
    assert document.status == DocumentStatus.READY
    texts = (
        await db_session.scalars(
            text("SELECT text FROM data_chunks WHERE document_id = :d"), {"d": document.id}
        )
    ).all()
    # The stale chunk of the interrupted run is gone; no chunk is duplicated.
    assert "stale" not in texts
    assert len(texts) == document.chunk_count == len(set(texts))


async def test_lanes_process_every_queued_document_once(db_session, settings, tmp_path):
    documents = [
        await _document_in_processing(db_session, settings, tmp_path, DocumentStatus.QUEUED)
        for _ in range(5)
    ]
    worker = IngestWorker(
        settings.model_copy(update={"ingest_concurrency": 2}), get_engine(settings)
    )
    claimed: list[uuid.UUID] = []
    in_flight = most_in_flight = 0
    process_claimed = worker.process_claimed

    async def recording(document_id, on_progress=None):
        nonlocal in_flight, most_in_flight
        claimed.append(document_id)
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        try:
            return await process_claimed(document_id, on_progress)
        finally:
            in_flight -= 1

    worker.process_claimed = recording
    try:
        assert await worker.run_until_idle() == len(claimed)
    finally:
        await worker.stop()
    # Each document claimed by exactly one lane, and two were worked on at once.
    assert len(claimed) == len(set(claimed))
    assert {document.id for document in documents} <= set(claimed)
    assert most_in_flight == 2
    for document in documents:
        await db_session.refresh(document)
        assert document.status == DocumentStatus.READY, document.error
        assert document.chunk_count and document.progress == 100


def test_ingest_and_reindex_commands(settings, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        cli, ["create-admin", "cli@example.com", "--password-stdin"], input="a long password 123\n"
    )
    assert result.exit_code == 0, result.output
    folder = tmp_path / "docs"
    folder.mkdir()
    samples.make_markdown(folder)
    samples.make_pdf(folder)
    samples.make_executable_named_pdf(folder, "virus.pdf")
    (folder / "LICENSE.md").write_text("Not a document of the corpus.")

    result = runner.invoke(cli, ["ingest", str(folder), "--project", "Handbook"])
    assert result.exit_code == 0, result.output
    assert "Created project Handbook" in result.output
    assert "skipped" in result.output and "virus.pdf" in result.output
    assert "LICENSE.md" not in result.output
    assert result.output.count("ready") == 2

    again = runner.invoke(cli, ["ingest", str(folder), "--project", "Handbook"])
    assert again.exit_code == 0, again.output
    assert "Nothing new to ingest" in again.output

    reindexed = runner.invoke(cli, ["reindex", "--project", "Handbook"])
    assert reindexed.exit_code == 0, reindexed.output
    assert "Re-indexing 2 document(s)" in reindexed.output

    unknown = runner.invoke(cli, ["ingest", str(folder), "--project", "X", "--owner", "no@x.org"])
    assert unknown.exit_code == 2
    assert runner.invoke(cli, ["reindex"]).exit_code == 2

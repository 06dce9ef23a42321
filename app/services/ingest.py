"""Documents: register uploads, ingest them in the background, delete them.

Request side (fast, in the route):
    ``check_staged`` refuses empty files and wrong types (4xx, nothing written), then
    ``register_uploads`` moves each staged file to ``DATA_DIR/uploads/<project>/<doc>``
    and inserts a ``queued`` document, or answers with the existing document when the
    project already has the same content (same SHA-256).

Background side (``IngestWorker``, one per app process, started by a lifespan hook):
    ``INGEST_CONCURRENCY`` lanes (default 2) each claim the oldest ``queued`` document
    -> ``processing`` and run ``process_document``, one document after another. Two
    lanes keep the embedding threads busy: while one document is embedded, the other
    is parsed, chunked or stored (their batches share one thread pool). Per document:
    parse (10 %) -> chunk (15 %) -> embed (15-95 %, saved every second) -> store in
    ``data_chunks`` through LlamaIndex's PGVectorStore -> ``ready`` (100 %). Any failure
    -> ``failed`` with the reason; the document's chunks and stored file are removed so
    nothing half-written stays.

Restart safety: a claimed document is covered by a Postgres session advisory lock held
by the processing worker's connection. It vanishes with the process, so a document
found ``processing`` whose lock is free is an orphan (the process died) and is put back
to ``queued`` - at start-up and then every minute. A blue-green sibling that is still
working on a document holds its lock, so its work is not stolen. ``process_document``
itself is idempotent: it adds the new chunks, then deletes any other chunks of the
document (left by an interrupted run, or the old ones during a reindex).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fastapi import status
from sqlalchemy import bindparam, delete, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.models.document import Document, DocumentStatus
from app.models.project import Project
from app.services import embeddings
from app.services.parsing import (
    CONTENT_TYPES,
    DocumentKind,
    ParseError,
    UnsupportedFile,
    detect_type,
    parse_file,
)
from app.services.uploads import StagedFile, UploadRejected

logger = logging.getLogger(__name__)

POLL_SECONDS = 5.0  # look for work queued by other processes (CLI, sibling app)
ORPHAN_SWEEP_SECONDS = 60.0
_PROGRESS_SECONDS = 1.0  # how often a processing document's progress is saved
ProgressCallback = Callable[[int], None]


# --------------------------------------------------------------------------------------
# storage paths


def project_dir(settings: Settings, project_id: uuid.UUID) -> Path:
    return settings.uploads_dir / str(project_id)


def stored_file(settings: Settings, document: Document) -> Path:
    return settings.uploads_dir / document.storage_path


def purge_project_files(settings: Settings, project_id: uuid.UUID) -> None:
    """Remove a deleted project's uploaded files (its rows and chunks cascade in SQL)."""
    shutil.rmtree(project_dir(settings, project_id), ignore_errors=True)


# --------------------------------------------------------------------------------------
# registering uploads


@dataclass
class UploadOutcome:
    document: Document
    duplicate: bool  # True: the project already had this content; nothing new was made


def check_staged(files: Sequence[StagedFile]) -> list[DocumentKind]:
    """The kind of every staged file, or ``UploadRejected`` for the first unusable one."""
    kinds = []
    for staged in files:
        if staged.size == 0:
            raise UploadRejected(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"'{staged.filename}' is empty."
            )
        try:
            kinds.append(detect_type(staged.path, staged.filename))
        except UnsupportedFile as error:
            raise UploadRejected(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(error)) from None
    return kinds


async def register_uploads(
    session: AsyncSession,
    settings: Settings,
    project: Project,
    files: Sequence[StagedFile],
    kinds: Sequence[DocumentKind],
) -> list[UploadOutcome]:
    """Turn checked staged files into queued documents (deduplicated by content).

    All-or-nothing: the rows are committed together, and if the commit fails the files
    moved into the project folder are removed again. Staged files that became documents
    are moved away; the caller discards whatever is left in ``.incoming``.
    """
    outcomes: list[UploadOutcome] = []
    moved: list[Path] = []
    by_hash: dict[str, Document] = {}
    try:
        for staged, kind in zip(files, kinds, strict=True):
            existing = by_hash.get(staged.sha256) or await session.scalar(
                select(Document).where(
                    Document.project_id == project.id, Document.sha256 == staged.sha256
                )
            )
            if existing is not None and existing.status == DocumentStatus.FAILED:
                # Same content failed before: try again with a fresh document.
                await session.delete(existing)
                await session.flush()
                existing = None
            if existing is not None:
                outcomes.append(UploadOutcome(existing, duplicate=True))
                continue
            document_id = uuid.uuid4()
            relative = Path(str(project.id)) / f"{document_id}{Path(staged.filename).suffix}"
            target = settings.uploads_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            staged.path.replace(target)  # same filesystem: an atomic rename
            moved.append(target)
            document = Document(
                id=document_id,
                project_id=project.id,
                owner_id=project.owner_id,
                filename=staged.filename,
                content_type=CONTENT_TYPES[kind],
                kind=kind.value,
                size_bytes=staged.size,
                sha256=staged.sha256,
                storage_path=str(relative),
                status=DocumentStatus.QUEUED,
                progress=0,
            )
            session.add(document)
            by_hash[staged.sha256] = document
            outcomes.append(UploadOutcome(document, duplicate=False))
        await session.commit()
    except IntegrityError:
        # A concurrent upload of the same content won the unique (project, sha256) race.
        await session.rollback()
        for path in moved:
            path.unlink(missing_ok=True)
        raise UploadRejected(
            status.HTTP_409_CONFLICT,
            "The same file is being uploaded concurrently; try again in a moment.",
        ) from None
    except BaseException:
        await session.rollback()
        for path in moved:
            path.unlink(missing_ok=True)
        raise
    for outcome in outcomes:
        await session.refresh(outcome.document)
    return outcomes


# --------------------------------------------------------------------------------------
# queries and deletion


async def list_documents(session: AsyncSession, project_id: uuid.UUID) -> Sequence[Document]:
    result = await session.scalars(
        select(Document)
        .where(Document.project_id == project_id)
        .order_by(Document.created_at.desc(), Document.id)
    )
    return result.all()


async def get_document(
    session: AsyncSession, project_id: uuid.UUID, document_id: uuid.UUID
) -> Document | None:
    """The document if it is in ``project_id`` (the caller checked the project's owner)."""
    return await session.scalar(
        select(Document).where(Document.id == document_id, Document.project_id == project_id)
    )


async def delete_document(session: AsyncSession, settings: Settings, document: Document) -> None:
    """Delete the document, its chunks (FK cascade) and its stored file."""
    path = stored_file(settings, document)
    await session.execute(delete(Document).where(Document.id == document.id))
    await session.commit()
    await asyncio.to_thread(path.unlink, missing_ok=True)


# --------------------------------------------------------------------------------------
# the pipeline


class DocumentVanished(Exception):
    """The document was deleted while it was being processed."""


@dataclass
class PipelineContext:
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    store: object  # llama_index PGVectorStore (imported lazily: torch/LlamaIndex are heavy)


async def _update(session: AsyncSession, document_id: uuid.UUID, **values: object) -> None:
    result = await session.execute(
        update(Document).where(Document.id == document_id).values(**values)
    )
    await session.commit()
    if result.rowcount == 0:
        raise DocumentVanished(str(document_id))


async def _embed_with_progress(
    texts: list[str],
    settings: Settings,
    report: Callable[[int], Awaitable[None]],
) -> list[list[float]]:
    """Embed ``texts`` in worker threads, reporting how many are done every second.

    One ``embed_texts`` call keeps all INGEST_THREADS threads busy to the end (no pause
    between groups of batches); the event loop meanwhile saves the progress.
    """
    done = 0

    def note(count: int) -> None:
        nonlocal done
        done = count

    job = asyncio.ensure_future(asyncio.to_thread(embeddings.embed_texts, texts, settings, note))
    reported = 0
    while not job.done():
        await asyncio.wait({job}, timeout=_PROGRESS_SECONDS)
        if done != reported and not job.done():
            reported = done
            await report(done)
    return job.result()


async def process_document(
    ctx: PipelineContext, document_id: uuid.UUID, on_progress: ProgressCallback | None = None
) -> DocumentStatus:
    """Parse, chunk, embed and store one (claimed) document; return its final status."""
    from app.services.chunking import chunk_sections, make_splitter
    from app.services.vector_store import build_nodes

    settings = ctx.settings

    async def progress(session: AsyncSession, percent: int) -> None:
        await _update(session, document_id, progress=percent)
        if on_progress is not None:
            on_progress(percent)

    async with ctx.sessionmaker() as session:
        document = await session.get(Document, document_id)
        if document is None:
            return DocumentStatus.FAILED
        # Plain values: after a rollback the ORM object's attributes are expired.
        path = stored_file(settings, document)
        try:
            if not path.is_file():
                raise ParseError("The uploaded file is missing from the server's storage.")
            parsed = await asyncio.to_thread(parse_file, path, DocumentKind(document.kind))
            await asyncio.to_thread(embeddings.load_model, settings)
            splitter = make_splitter(
                embeddings.effective_chunk_size(settings),
                settings.chunk_overlap,
                embeddings.token_counter(settings),
            )
            chunks = await asyncio.to_thread(chunk_sections, parsed.sections, splitter)
            if not chunks:
                raise ParseError("No extractable text was found in the document.")
            # One write for both (each commit waits for the disk), and the check that
            # the document was not deleted meanwhile, before the costly embedding.
            await _update(session, document_id, page_count=parsed.page_count, progress=15)
            if on_progress is not None:
                on_progress(15)

            texts = [chunk.embedding_text for chunk in chunks]
            vectors = await _embed_with_progress(
                texts, settings, lambda done: progress(session, 15 + int(80 * done / len(texts)))
            )

            nodes = build_nodes(document, chunks, vectors)
            await ctx.store.async_add(nodes)  # type: ignore[attr-defined]
            # Drop every other chunk of this document: leftovers of an interrupted run,
            # or the previous vectors when re-indexing.
            await session.execute(
                text(
                    "DELETE FROM data_chunks WHERE document_id = :document_id "
                    "AND NOT (node_id = ANY(:keep))"
                ).bindparams(bindparam("keep", type_=_text_array())),
                {"document_id": document_id, "keep": [node.node_id for node in nodes]},
            )
            await _update(
                session,
                document_id,
                status=DocumentStatus.READY,
                progress=100,
                chunk_count=len(nodes),
                error=None,
                embedding_model=settings.embedding_model,
            )
            if on_progress is not None:
                on_progress(100)
            return DocumentStatus.READY
        except DocumentVanished:
            await session.rollback()
            await _delete_chunks(session, document_id)  # FK would refuse them anyway
            return DocumentStatus.FAILED
        except asyncio.CancelledError:
            raise  # shutdown: the orphan sweep re-queues the document later
        except ParseError as error:
            await _fail(session, document_id, path, str(error))
            return DocumentStatus.FAILED
        except Exception as error:
            logger.exception("ingestion of document %s failed", document_id)
            await _fail(
                session,
                document_id,
                path,
                f"Processing failed because of an internal error ({type(error).__name__}). "
                "Upload the file again to retry; if it keeps failing, tell the administrator.",
            )
            return DocumentStatus.FAILED


def _text_array():
    from sqlalchemy import String
    from sqlalchemy.dialects.postgresql import ARRAY

    return ARRAY(String)


async def _delete_chunks(session: AsyncSession, document_id: uuid.UUID) -> None:
    await session.execute(
        text("DELETE FROM data_chunks WHERE document_id = :document_id"),
        {"document_id": document_id},
    )
    await session.commit()


async def _fail(session: AsyncSession, document_id: uuid.UUID, path: Path, reason: str) -> None:
    """Mark ``failed`` with ``reason``; remove its chunks and its file (nothing half-done)."""
    await session.rollback()
    await _delete_chunks(session, document_id)
    with contextlib.suppress(DocumentVanished):
        await _update(
            session,
            document_id,
            status=DocumentStatus.FAILED,
            error=reason,
            progress=0,
            chunk_count=0,
        )
    await asyncio.to_thread(path.unlink, missing_ok=True)


# --------------------------------------------------------------------------------------
# claiming work (advisory locks) and the worker


def _lock_key(document_id: uuid.UUID) -> int:
    """A signed 64-bit advisory-lock key for a document."""
    return int.from_bytes(document_id.bytes[:8], "big", signed=True)


class IngestWorker:
    """Processes queued documents in this process, INGEST_CONCURRENCY at once (see the
    module docstring)."""

    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self.settings = settings
        self.engine = engine
        self.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sync_engine = None
        self._context: PipelineContext | None = None
        self._context_lock = asyncio.Lock()  # lanes start together: load things once
        self._next_sweep: float | None = None

    # -- life cycle
    async def start(self) -> None:
        """Load the model and start the background loop (which first re-queues orphans).

        A failure here (model missing, database not migrated yet) does not stop the app:
        it is logged, ``/readyz`` reports it, and the loop keeps retrying.
        """
        try:
            await self._ensure_context()
        except Exception:
            logger.exception("ingestion is not ready yet; the worker will retry")
        self._task = asyncio.create_task(self._loop(), name="ingest-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._sync_engine is not None:
            self._sync_engine.dispose()
            self._sync_engine = None

    def notify(self) -> None:
        """New work was queued: look now instead of at the next poll."""
        self._wake.set()

    async def _ensure_context(self) -> PipelineContext:
        if self._context is not None:
            return self._context
        async with self._context_lock:
            return await self._create_context()

    async def _create_context(self) -> PipelineContext:
        if self._context is None:
            from sqlalchemy import create_engine
            from sqlalchemy.pool import NullPool

            from app.core.db import sync_database_url
            from app.services.vector_store import make_vector_store

            loaded = await asyncio.to_thread(embeddings.load_model, self.settings)
            # PGVectorStore wants a sync engine too; we only use its async path, so this
            # one never opens a connection unless something calls the sync API.
            self._sync_engine = create_engine(sync_database_url(self.settings), poolclass=NullPool)
            store = make_vector_store(
                self.settings, loaded.dimension, self._sync_engine, self.engine
            )
            self._context = PipelineContext(self.settings, self.sessionmaker, store)
        return self._context

    # -- the loop
    async def _loop(self) -> None:
        while True:
            await self.run_until_idle()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            self._wake.clear()

    async def _sweep_if_due(self) -> None:
        """Re-queue orphans at start (this process may be a restart), then every minute."""
        now = asyncio.get_running_loop().time()
        if self._next_sweep is not None and now < self._next_sweep:
            return
        self._next_sweep = now + ORPHAN_SWEEP_SECONDS  # set first: the other lanes skip
        await self.requeue_orphans()

    async def run_until_idle(self) -> int:
        """Process queued documents in INGEST_CONCURRENCY lanes until none is left to claim.

        Returns how many documents were processed. An error in a lane (the database went
        away...) is logged and ends that lane; the loop tries again after a poll.
        """

        async def lane() -> int:
            processed = 0
            try:
                while True:
                    await self._sweep_if_due()
                    if not await self.process_next():
                        break
                    processed += 1
            except Exception:
                logger.exception("ingest worker error; retrying in %s s", POLL_SECONDS)
            return processed

        lanes = max(1, self.settings.ingest_concurrency)
        return sum(await asyncio.gather(*(lane() for _ in range(lanes))))

    async def process_next(
        self,
        only: Sequence[uuid.UUID] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> bool:
        """Claim and process the oldest queued document (of ``only`` if given).

        False when there was nothing to claim (none queued, or another worker has it).
        """
        await self._ensure_context()  # claim nothing we could not process
        async with self.engine.connect() as lock_connection:
            document_id = await self._claim(lock_connection, only)
            if document_id is None:
                return False
            try:
                await self.process_claimed(document_id, on_progress)
            finally:
                await self._unlock(lock_connection, document_id)
        return True

    async def process_claimed(
        self, document_id: uuid.UUID, on_progress: ProgressCallback | None = None
    ) -> DocumentStatus:
        context = await self._ensure_context()
        return await process_document(context, document_id, on_progress)

    async def _claim(
        self, lock_connection: AsyncConnection, only: Sequence[uuid.UUID] | None
    ) -> uuid.UUID | None:
        async with self.sessionmaker() as session:
            query = (
                select(Document.id)
                .where(Document.status == DocumentStatus.QUEUED)
                .order_by(Document.created_at, Document.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if only is not None:
                query = query.where(Document.id.in_(list(only)))
            document_id = await session.scalar(query)
            if document_id is None:
                return None
            locked = await lock_connection.scalar(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": _lock_key(document_id)}
            )
            await lock_connection.commit()  # session-level lock: survives the commit
            if not locked:
                return None
            await session.execute(
                update(Document)
                .where(Document.id == document_id)
                .values(status=DocumentStatus.PROCESSING, progress=0, error=None)
            )
            await session.commit()
            return document_id

    @staticmethod
    async def _unlock(lock_connection: AsyncConnection, document_id: uuid.UUID) -> None:
        with contextlib.suppress(Exception):
            await lock_connection.scalar(
                text("SELECT pg_advisory_unlock(:key)"), {"key": _lock_key(document_id)}
            )
            await lock_connection.commit()

    async def requeue_orphans(self) -> int:
        """Put ``processing`` documents whose worker is gone back to ``queued``."""
        requeued = 0
        async with self.sessionmaker() as session, self.engine.connect() as lock_connection:
            ids = (
                await session.scalars(
                    select(Document.id).where(Document.status == DocumentStatus.PROCESSING)
                )
            ).all()
            for document_id in ids:
                key = {"key": _lock_key(document_id)}
                free = await lock_connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), key)
                if not free:
                    continue  # a live worker (maybe in another process) is on it
                try:
                    result = await session.execute(
                        update(Document)
                        .where(
                            Document.id == document_id,
                            Document.status == DocumentStatus.PROCESSING,
                        )
                        .values(status=DocumentStatus.QUEUED, progress=0)
                    )
                    await session.commit()
                    requeued += result.rowcount
                finally:
                    await lock_connection.scalar(text("SELECT pg_advisory_unlock(:key)"), key)
            await lock_connection.commit()
        if requeued:
            logger.info("re-queued %d interrupted document(s)", requeued)
            self._wake.set()
        return requeued


# --------------------------------------------------------------------------------------
# app integration (lifespan hooks, readiness)


async def start_worker(app) -> None:
    """Lifespan start-up hook: load the model and start this process's ingest worker."""
    from app.core.db import get_engine

    worker = IngestWorker(app.state.settings, get_engine(app.state.settings))
    await worker.start()
    app.state.ingest_worker = worker


async def stop_worker(app) -> None:
    worker: IngestWorker | None = getattr(app.state, "ingest_worker", None)
    if worker is not None:
        await worker.stop()


async def check_embedding_model(app) -> str:
    """Readiness: the model is loaded and its dimension matches the chunk table's."""
    from app.core.db import get_engine
    from app.services.vector_store import column_dimension

    settings: Settings = app.state.settings
    if not embeddings.is_model_loaded():
        raise RuntimeError("embedding model not loaded yet")
    dimension = embeddings.embedding_dimension(settings)
    async with get_engine(settings).connect() as connection:
        stored = await connection.run_sync(column_dimension)
    if stored is not None and stored != dimension:
        raise RuntimeError(
            f"{settings.embedding_model} makes {dimension}-d vectors but the chunk table "
            f"holds {stored}-d ones: run `knowledgetree reindex --all`"
        )
    return (
        f"{settings.embedding_model} loaded ({dimension} dimensions); queries embedded by "
        f"{embeddings.query_encoder_status(settings)}"
    )

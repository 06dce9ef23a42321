"""The ingest worker: claims queued documents and runs the pipeline on them.

One per app process (started by ``app.core.lifecycle``), INGEST_CONCURRENCY lanes. A
claimed document is covered by a Postgres session advisory lock, so a document found
``processing`` with a free lock is an orphan and goes back to ``queued``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker

from app.core import metrics
from app.core.config import Settings
from app.models.document import Document, DocumentStatus
from app.services import embeddings
from app.services.ingestion.pipeline import PipelineContext, ProgressCallback, process_document

logger = logging.getLogger(__name__)

POLL_SECONDS = 5.0  # look for work queued by other processes (CLI, sibling app)
ORPHAN_SWEEP_SECONDS = 60.0
GAVE_UP = (
    "Processing this file stopped the app every time it was tried, so it was given up; "
    "it may be too large or malformed. Delete it, or split it and upload the parts."
)


def _lock_key(document_id: uuid.UUID) -> int:
    """A signed 64-bit advisory-lock key for a document."""
    return int.from_bytes(document_id.bytes[:8], "big", signed=True)


class IngestWorker:
    """Processes queued documents in this process, INGEST_CONCURRENCY at once."""

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
        """Start the background loop: it re-queues orphans, then loads the model (after
        the query path: ``embeddings.load_model_for_ingestion``) and processes the queue.

        Nothing here waits for the model, so a colour is ready without it; documents
        uploaded meanwhile stay ``queued`` until it is loaded. A failure (model missing,
        database not migrated yet) is logged and the loop retries at the next poll.
        """
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

            loaded = await asyncio.to_thread(embeddings.load_model_for_ingestion, self.settings)
            # PGVectorStore wants a sync engine too; we only use its async path, so this
            # one never opens a connection unless something calls the sync API.
            self._sync_engine = create_engine(
                sync_database_url(self.settings), poolclass=NullPool, hide_parameters=True
            )
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
                metrics.INGEST_WORKER_ERRORS.inc()
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
        status = await process_document(context, document_id, on_progress)
        metrics.INGEST_DOCUMENTS.labels(
            metrics.bounded(status.value, metrics.INGEST_OUTCOMES)
        ).inc()
        return status

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
            metrics.INGEST_QUEUE_LENGTH.set(
                await session.scalar(
                    select(func.count()).where(Document.status == DocumentStatus.QUEUED)
                )
                or 0
            )
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
                .values(
                    status=DocumentStatus.PROCESSING,
                    progress=0,
                    error=None,
                    attempts=Document.attempts + 1,
                )
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
        """Put ``processing`` documents whose worker is gone back to ``queued``; one
        whose processing was interrupted INGEST_MAX_ATTEMPTS times becomes ``failed``
        (it probably killed the process each time)."""
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
                    orphan = (Document.id == document_id) & (
                        Document.status == DocumentStatus.PROCESSING
                    )
                    gave_up = await session.execute(
                        update(Document)
                        .where(orphan, Document.attempts >= self.settings.ingest_max_attempts)
                        .values(status=DocumentStatus.FAILED, progress=0, error=GAVE_UP)
                    )
                    if gave_up.rowcount:
                        logger.warning("document %s failed after repeated crashes", document_id)
                    result = await session.execute(
                        update(Document)
                        .where(orphan)
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

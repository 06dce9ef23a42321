"""The ingestion pipeline for one claimed document: parse -> chunk -> embed -> store.

Progress: parse 10 %, chunk 15 %, embed 15-95 % (saved every second), stored -> ``ready``
(100 %). A document the app cannot take (unreadable, over INGEST_MAX_PAGES, _CHARACTERS
or _CHUNKS) -> ``failed`` with the reason, its chunks and file removed. An internal
error (the database, the disk, a bug) -> ``failed`` too, but the file is kept: it is
the only copy and may be fine. Idempotent: a re-run replaces whatever chunks an
earlier run left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import bindparam, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.models.document import Document, DocumentStatus
from app.services import embeddings
from app.services.documents import stored_file
from app.services.isolated_parse import parse_file_isolated
from app.services.parsing import DocumentKind, ParsedDocument, ParseError

logger = logging.getLogger(__name__)

_PROGRESS_SECONDS = 1.0  # how often a processing document's progress is saved
ProgressCallback = Callable[[int], None]


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
    from app.services.chunking import chunk_sections, document_title, make_splitter
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
            parsed = await parse_file_isolated(
                path,
                DocumentKind(document.kind),
                memory_mb=settings.parse_memory_mb,
                cpu_seconds=settings.parse_cpu_seconds,
                timeout_seconds=settings.parse_timeout_seconds,
            )
            _check_size(parsed, settings)
            await asyncio.to_thread(embeddings.load_model, settings)
            splitter = make_splitter(
                embeddings.effective_chunk_size(settings),
                settings.chunk_overlap,
                embeddings.token_counter(settings),
            )
            chunks = await asyncio.to_thread(
                chunk_sections, parsed.sections, splitter, document_title(document.filename)
            )
            if not chunks:
                raise ParseError("No extractable text was found in the document.")
            if len(chunks) > settings.ingest_max_chunks:
                raise ParseError(
                    f"The document makes {len(chunks):,} passages, more than the limit of "
                    f"{settings.ingest_max_chunks:,} (INGEST_MAX_CHUNKS); split it."
                )
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
                keep_file=True,
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


def _check_size(parsed: ParsedDocument, settings: Settings) -> None:
    """Refuse what would hold too much memory or embedding time (ParseError)."""
    if parsed.page_count is not None and parsed.page_count > settings.ingest_max_pages:
        raise ParseError(
            f"The document has {parsed.page_count:,} pages, more than the limit of "
            f"{settings.ingest_max_pages:,} (INGEST_MAX_PAGES); split it."
        )
    characters = sum(len(section.text) for section in parsed.sections)
    if characters > settings.ingest_max_characters:
        raise ParseError(
            f"The document has {characters:,} characters of text, more than the limit of "
            f"{settings.ingest_max_characters:,} (INGEST_MAX_CHARACTERS); split it."
        )


async def _fail(
    session: AsyncSession,
    document_id: uuid.UUID,
    path: Path,
    reason: str,
    *,
    keep_file: bool = False,
) -> None:
    """Mark ``failed`` with ``reason``; remove its chunks and (unless ``keep_file``: an
    internal error, the file may be fine) its file."""
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
    if not keep_file:
        await asyncio.to_thread(path.unlink, missing_ok=True)

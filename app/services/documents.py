"""Documents: register uploads as queued documents, list them, delete them.

``check_staged`` refuses empty files and unsupported types before anything is written;
``register_uploads`` moves each staged file to ``DATA_DIR/uploads/<project>/<doc>`` and
inserts a ``queued`` document (or returns the project's existing document with the same
SHA-256). Processing happens later, in ``app.services.ingestion``.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import ColumnElement, String, bindparam, delete, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.models.conversation import MessageSource
from app.models.document import Document, DocumentStatus
from app.models.project import Project
from app.services.parsing import CONTENT_TYPES, DocumentKind, UnsupportedFile, detect_type
from app.services.uploads import RejectReason, StagedFile, UploadRejected

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
            raise UploadRejected(RejectReason.EMPTY, f"'{staged.filename}' is empty.")
        try:
            kinds.append(detect_type(staged.path, staged.filename))
        except UnsupportedFile as error:
            raise UploadRejected(RejectReason.UNSUPPORTED_TYPE, str(error)) from None
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
    replaced: list[Path] = []
    by_hash: dict[str, Document] = {}
    try:
        for staged, kind in zip(files, kinds, strict=True):
            existing = by_hash.get(staged.sha256) or await session.scalar(
                select(Document).where(
                    Document.project_id == project.id, Document.sha256 == staged.sha256
                )
            )
            if existing is not None and existing.status == DocumentStatus.FAILED:
                # Same content failed before: try again with a fresh document (the
                # old one's file, kept after an internal error, goes once this commits).
                replaced.append(stored_file(settings, existing))
                await session.delete(existing)
                await session.flush()
                existing = None
            if existing is not None:
                outcomes.append(UploadOutcome(existing, duplicate=True))
                continue
            document_id = uuid.uuid4()
            # Named by id and detected kind: the client's extension may be anything (250
            # characters made the name too long for the file system).
            relative = Path(str(project.id)) / f"{document_id}.{kind.value}"
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
            RejectReason.CONCURRENT_DUPLICATE,
            "The same file is being uploaded concurrently; try again in a moment.",
        ) from None
    except BaseException:
        await session.rollback()
        for path in moved:
            path.unlink(missing_ok=True)
        raise
    for path in replaced:
        path.unlink(missing_ok=True)
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


DELETED_SOURCE_TEXT = "(this passage's document was deleted)"


async def forget_document_text(session: AsyncSession, where_documents: ColumnElement[bool]) -> None:
    """Remove the text of the documents matching ``where_documents`` (a condition on
    ``Document``) from what outlives them: the passages saved with chat answers (the
    citation stays, its text goes) and the sources artifacts keep for regeneration
    (dropped, so a regeneration never sends it to the model again). Part of the
    caller's transaction."""
    ids = (await session.scalars(select(Document.id).where(where_documents))).all()
    if not ids:
        return
    await session.execute(
        update(MessageSource)
        .where(MessageSource.document_id.in_(ids))
        .values(text=DELETED_SOURCE_TEXT)
    )
    await session.execute(
        text(
            "UPDATE artifacts SET sources = COALESCE((SELECT jsonb_agg(s) "
            "FROM jsonb_array_elements(artifacts.sources) AS s "
            "WHERE NOT (s->>'document_id' = ANY(:ids))), '[]'::jsonb) "
            "WHERE EXISTS (SELECT 1 FROM jsonb_array_elements(artifacts.sources) AS s "
            "WHERE s->>'document_id' = ANY(:ids))"
        ).bindparams(bindparam("ids", type_=ARRAY(String))),
        {"ids": [str(document_id) for document_id in ids]},
    )


async def delete_document(session: AsyncSession, settings: Settings, document: Document) -> None:
    """Delete the document, its chunks (FK cascade), its text where answers and
    artifacts kept it, and its stored file."""
    path = stored_file(settings, document)
    await forget_document_text(session, Document.id == document.id)
    await session.execute(delete(Document).where(Document.id == document.id))
    await session.commit()
    await asyncio.to_thread(path.unlink, missing_ok=True)

"""``knowledgetree ingest`` and ``knowledgetree reindex``.

ingest PATH --project NAME [--owner EMAIL]
    Add a file or a folder (recursively) to a project, with a progress bar. Files go
    through the same checks, deduplication and pipeline as uploads through the API;
    unsupported files are reported and skipped, content the project already has is
    skipped. The command processes the documents itself (no server needed); if a
    running server's worker picks one up first, the bar follows that one instead.

reindex --project NAME [--owner EMAIL] | --all
    Re-embed documents from their stored files, e.g. after EMBEDDING_MODEL changed. When
    the new model's dimension differs from the chunk table's, the vector column is
    retyped first (every stored vector is dropped, since vectors of two models cannot
    be compared); then run it for every project (``--all``). Old chunks stay
    searchable until each document's new chunks replace them.

Exit codes: 0 all documents ready, 1 some failed, 2 bad usage (unknown owner/project).
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import uuid
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_EXCLUDES = ["LICENSE*", "README*", ".*"]


def register(cli: typer.Typer) -> None:
    cli.command("ingest")(ingest)
    cli.command("reindex")(reindex)


def ingest(
    path: Annotated[
        Path, typer.Argument(exists=True, readable=True, help="A file or a folder to add.")
    ],
    project: Annotated[str, typer.Option("--project", "-p", help="Project name.")],
    owner: Annotated[
        str | None,
        typer.Option(help="E-mail of the project's owner (needed when there are several users)."),
    ] = None,
    create: Annotated[
        bool, typer.Option(help="Create the project if the owner has none of that name.")
    ] = True,
    exclude: Annotated[
        list[str] | None,
        typer.Option(help=f"Glob of file names to skip (repeatable). Default: {DEFAULT_EXCLUDES}"),
    ] = None,
) -> None:
    """Add a file or folder of documents to a project, with a progress bar."""
    from app.cli import load_settings_or_exit

    settings = load_settings_or_exit()
    files = _collect(path, exclude if exclude is not None else DEFAULT_EXCLUDES)
    if not files:
        raise _fail(f"No files to ingest under {path}.", 2)
    code = asyncio.run(_ingest(settings, files, project, owner, create))
    raise typer.Exit(code)


def reindex(
    project: Annotated[
        str | None, typer.Option("--project", "-p", help="Project to re-embed.")
    ] = None,
    owner: Annotated[str | None, typer.Option(help="E-mail of the project's owner.")] = None,
    all_projects: Annotated[bool, typer.Option("--all", help="Re-embed every project.")] = False,
) -> None:
    """Re-embed a project's documents with the configured EMBEDDING_MODEL."""
    from app.cli import load_settings_or_exit

    if (project is None) == (not all_projects) or (project and all_projects):
        raise _fail("Give either --project NAME or --all.", 2)
    settings = load_settings_or_exit()
    code = asyncio.run(_reindex(settings, project, owner))
    raise typer.Exit(code)


# --------------------------------------------------------------------------------------


def _fail(message: str, code: int) -> typer.Exit:
    from app.cli import fail

    return fail(message, code)


def _collect(path: Path, excludes: list[str]) -> list[Path]:
    candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [
        p
        for p in candidates
        if not any(fnmatch.fnmatch(part, glob) for glob in excludes for part in p.parts[-1:])
        and not any(part.startswith(".") for part in p.relative_to(path).parts[:-1])
    ]


def _engine(settings):
    from sqlalchemy.ext.asyncio import create_async_engine

    return create_async_engine(settings.database_url, pool_size=3, max_overflow=2)


async def _resolve_owner(session, owner_email: str | None):
    from sqlalchemy import func, select

    from app.models.user import User
    from app.services import accounts

    if owner_email:
        user = await accounts.get_user_by_email(session, owner_email.strip().lower())
        if user is None:
            raise _fail(f"No account with the e-mail {owner_email}.", 2)
        return user
    if await session.scalar(select(func.count()).select_from(User)) == 1:
        return await session.scalar(select(User))
    raise _fail("Say whose project it is: --owner EMAIL.", 2)


async def _ingest(settings, files, project_name, owner_email, create) -> int:
    from rich.console import Console

    from app.services import documents as document_service
    from app.services import projects as project_service
    from app.services.ingestion.worker import IngestWorker
    from app.services.parsing import UnsupportedFile, detect_type
    from app.services.uploads import StagedFile, discard, incoming_dir

    console = Console()
    engine = _engine(settings)
    worker = IngestWorker(settings, engine)
    try:
        async with worker.sessionmaker() as session:
            user = await _resolve_owner(session, owner_email)
            project = await project_service.get_project_by_name(session, user.id, project_name)
            if project is None:
                if not create:
                    raise _fail(f"{user.email} has no project named '{project_name}'.", 2)
                project = await project_service.create_project(session, user.id, project_name)
                console.print(f"Created project [bold]{project_name}[/] for {user.email}.")

            new_ids: list[uuid.UUID] = []
            skipped = 0
            for path in files:
                staged = _stage(path, incoming_dir(settings), StagedFile)
                try:
                    if staged.size == 0:
                        raise UnsupportedFile("The file is empty.")
                    if staged.size > settings.max_upload_bytes:
                        raise UnsupportedFile(
                            f"It is larger than MAX_UPLOAD_MB ({settings.max_upload_mb} MiB)."
                        )
                    kind = detect_type(staged.path, staged.filename)
                    [outcome] = await document_service.register_uploads(
                        session, settings, project, [staged], [kind]
                    )
                except UnsupportedFile as error:
                    console.print(f"[yellow]skipped[/] {path}: {error}")
                    skipped += 1
                    continue
                finally:
                    discard([staged])
                if outcome.duplicate:
                    console.print(f"[dim]already in the project[/] {path}")
                    skipped += 1
                else:
                    new_ids.append(outcome.document.id)
        if not new_ids:
            console.print("Nothing new to ingest.")
            return 0
        return await _process_with_progress(console, worker, new_ids)
    finally:
        await worker.stop()
        await engine.dispose()


def _stage(path: Path, directory: Path, staged_cls):
    """Copy ``path`` into .incoming (as an upload would arrive), hashing it on the way."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{uuid.uuid4()}.part"
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as source, target.open("wb") as sink:
        while block := source.read(1024 * 1024):
            digest.update(block)
            size += len(block)
            sink.write(block)
    return staged_cls(filename=path.name, path=target, size=size, sha256=digest.hexdigest())


async def _process_with_progress(console, worker, document_ids: list[uuid.UUID]) -> int:
    """Process (or follow) the documents with a rich progress display; 1 if any failed."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from app.models.document import Document, DocumentStatus

    with console.status("Loading the embedding model..."):
        await worker._ensure_context()

    columns = (
        TextColumn("{task.description}", justify="left"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        overall = progress.add_task("[bold]all documents", total=len(document_ids))
        for document_id in document_ids:
            async with worker.sessionmaker() as session:
                name = await session.scalar(
                    Document.__table__.select()
                    .with_only_columns(Document.filename)
                    .where(Document.id == document_id)
                )
            task = progress.add_task(f"  {name}", total=100)

            def advance(percent: int, task: int = task) -> None:
                progress.update(task, completed=percent)

            claimed = await worker.process_next(only=[document_id], on_progress=advance)
            if not claimed:  # a server's worker is on it: follow its progress
                while True:
                    async with worker.sessionmaker() as session:
                        document = await session.get(Document, document_id)
                    if document is None or document.status in (
                        DocumentStatus.READY,
                        DocumentStatus.FAILED,
                    ):
                        break
                    advance(document.progress)
                    await asyncio.sleep(0.5)
            progress.update(task, completed=100)
            progress.advance(overall)

    table = Table("document", "status", "chunks", "detail")
    failed = 0
    async with worker.sessionmaker() as session:
        for document_id in document_ids:
            document = await session.get(Document, document_id)
            if document is None:
                continue
            ok = document.status == DocumentStatus.READY
            failed += not ok
            table.add_row(
                document.filename,
                f"[green]{document.status}[/]" if ok else f"[red]{document.status}[/]",
                str(document.chunk_count),
                document.error or "",
            )
    console.print(table)
    return 1 if failed else 0


async def _reindex(settings, project_name, owner_email) -> int:
    from rich.console import Console
    from sqlalchemy import select, update

    from app.models.document import Document, DocumentStatus
    from app.models.project import Project
    from app.services import embeddings
    from app.services import projects as project_service
    from app.services.ingestion.worker import IngestWorker
    from app.services.vector_store import column_dimension, set_dimension

    console = Console()
    engine = _engine(settings)
    worker = IngestWorker(settings, engine)
    try:
        with console.status(f"Loading {settings.embedding_model}..."):
            dimension = await asyncio.to_thread(embeddings.embedding_dimension, settings)
        async with engine.begin() as connection:
            stored = await connection.run_sync(column_dimension)
            if stored is not None and stored != dimension:
                console.print(
                    f"[yellow]The chunk table holds {stored}-d vectors; "
                    f"{settings.embedding_model} makes {dimension}-d ones.[/] Retyping the "
                    "column: every stored vector is dropped until its project is re-indexed."
                )
                await connection.run_sync(lambda c: set_dimension(c, settings, dimension))
                if project_name is not None:
                    console.print(
                        "[yellow]Other projects have no vectors now: "
                        "run `knowledgetree reindex --all`.[/]"
                    )
        async with worker.sessionmaker() as session:
            if project_name is not None:
                user = await _resolve_owner(session, owner_email)
                project = await project_service.get_project_by_name(session, user.id, project_name)
                if project is None:
                    raise _fail(f"{user.email} has no project named '{project_name}'.", 2)
                project_ids = [project.id]
            else:
                project_ids = list((await session.scalars(select(Project.id))).all())
            document_ids = list(
                (
                    await session.scalars(
                        select(Document.id)
                        .where(
                            Document.project_id.in_(project_ids),
                            Document.status == DocumentStatus.READY,
                        )
                        .order_by(Document.created_at)
                    )
                ).all()
            )
            if not document_ids:
                console.print("No ready documents to re-index.")
                return 0
            # Back in the queue: this command (or a running server) re-embeds them; the old
            # chunks answer searches until each document's new ones replace them.
            await session.execute(
                update(Document)
                .where(Document.id.in_(document_ids))
                .values(status=DocumentStatus.QUEUED, progress=0)
            )
            await session.commit()
        console.print(f"Re-indexing {len(document_ids)} document(s).")
        return await _process_with_progress(console, worker, document_ids)
    finally:
        await worker.stop()
        await engine.dispose()

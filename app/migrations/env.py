"""Alembic environment: runs migrations synchronously over psycopg 3.

Rules for writing migrations (blue-green releases run the old and the new app
version against the same schema for a while, so every migration must be
"expand/contract"):

1. Expand first. A release may only ADD: new tables, new nullable columns or
   columns with a server default, new indexes (``postgresql_concurrently`` for
   big tables, outside a transaction), new constraints that existing rows and
   the old code already satisfy.
2. Contract later. Dropping or renaming a column/table, tightening NOT NULL, or
   changing a type happens only in a later release, once no running version
   reads or writes the old shape. A rename is: add new, write both, backfill,
   switch reads, drop old -- over several releases. A script that the release
   before it would NOT survive says so at module level:
   ``BREAKS_PREVIOUS_RELEASE = True``; the deploy then refuses the release
   (``knowledgetree pending-migrations``, roles/app/tasks/migrate.yml).
3. Never rely on the ORM in a migration (models change; migrations must not).
   Use ``op`` and plain SQL.
4. Every migration has a working ``downgrade`` unless it destroys data; then say
   so in its docstring.
5. The app never creates tables at start-up; ``knowledgetree migrate`` (Alembic
   ``upgrade heads``) is the only way the schema changes, and ``/readyz`` reports
   a database that is behind the code's head (one at a revision the code does not
   know, a newer release's, is fine: that is a rollback on an expanded schema).

Revision ids are short sequence numbers ("0001", "0002", ...) and file names are
``NNNN_what_it_does.py``; each new revision's ``down_revision`` is the previous one.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

import app.models  # noqa: F401  (registers every table on Base.metadata)
from app.core.db import sync_database_url
from app.models.base import Base

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    # Set by app.core.migrations.alembic_config(); the alembic CLI falls back to settings.
    return config.attributes.get("database_url") or sync_database_url()


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade --sql``) instead of touching a database."""
    context.configure(
        url=_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:  # a caller handed us an open connection
        _run(connectable)
        return
    engine = create_engine(_database_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # One transaction per migration: a failure leaves the database at the last good one.
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

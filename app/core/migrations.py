"""Alembic, driven from Python with the configuration packaged inside ``app``.

The migration scripts ship in the wheel (``app/migrations``), so ``knowledgetree
migrate`` works from an installed release without an ``alembic.ini`` on disk.
(``app/migrations/alembic.ini`` exists for developers who prefer the ``alembic``
command: ``alembic -c app/migrations/alembic.ini upgrade head``.)
"""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

from app.core.config import Settings
from app.core.db import sync_database_url

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(settings: Settings | None = None) -> Config:
    """An Alembic Config pointing at the packaged scripts and at the settings' database.

    The URL travels in ``config.attributes`` (not the ini options) because ini
    interpolation would mangle the '%' of URL-encoded passwords.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = sync_database_url(settings)
    return config


@functools.cache
def script_heads() -> frozenset[str]:
    """Revision ids of the newest migration(s) shipped with this code (read once: the
    scripts do not change while the process runs)."""
    return frozenset(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads())


@functools.cache
def script_revisions() -> frozenset[str]:
    """Revision ids of every migration shipped with this code."""
    return frozenset(
        script.revision for script in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()
    )


def pending_revisions(connection: Connection) -> list[tuple[str, bool]] | None:
    """Migrations this code would apply to the database, oldest first, each with whether
    it breaks the release before it (a revision script that removes or renames what that
    release uses says ``BREAKS_PREVIOUS_RELEASE = True``; see docs/MAINTENANCE.md).
    None when the database is at a revision this code does not know (a newer release's)."""
    scripts = ScriptDirectory(str(MIGRATIONS_DIR))
    current = database_revisions(connection)
    if current - script_revisions():
        return None
    pending = []
    for script in scripts.iterate_revisions("heads", tuple(current) or "base"):
        if script.revision in current:
            continue
        pending.append(
            (script.revision, bool(getattr(script.module, "BREAKS_PREVIOUS_RELEASE", False)))
        )
    return list(reversed(pending))


def database_revisions(connection: Connection) -> set[str]:
    """Revision ids recorded in the database's ``alembic_version`` table (empty if none)."""
    if not inspect(connection).has_table("alembic_version"):
        return set()
    return set(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())


def upgrade(settings: Settings | None = None, revision: str = "heads") -> None:
    """Apply migrations up to ``revision`` (default: all heads)."""
    command.upgrade(alembic_config(settings), revision)


def downgrade(settings: Settings | None, revision: str) -> None:
    command.downgrade(alembic_config(settings), revision)

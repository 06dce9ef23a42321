"""``knowledgetree pending-migrations``: what ``migrate`` would apply, for the blue-green
deploy (roles/app/tasks/release.yml), which refuses a release whose migrations break the
live release (``BREAKS_PREVIOUS_RELEASE = True`` in a revision script).

Prints one JSON object: ``{"database_ahead": false, "pending": [{"revision": "0009_x",
"breaks_previous_release": false}]}``. ``database_ahead`` is true when the database is
at a revision this release does not know (a newer release migrated it): nothing to apply.
"""

from __future__ import annotations

import json

import typer


def register(cli: typer.Typer) -> None:
    cli.command("pending-migrations")(pending_migrations)


def pending_migrations() -> None:
    """Print the migrations `migrate` would apply (JSON), and whether each breaks the
    release before it."""
    from sqlalchemy import create_engine

    from app.cli import fail, load_settings_or_exit
    from app.core import migrations
    from app.core.db import sync_database_url

    settings = load_settings_or_exit()
    engine = create_engine(sync_database_url(settings))
    try:
        with engine.connect() as connection:
            pending = migrations.pending_revisions(connection)
    except Exception as error:
        raise fail(f"Cannot read the database's migration state: {type(error).__name__}") from None
    finally:
        engine.dispose()
    typer.echo(
        json.dumps(
            {
                "database_ahead": pending is None,
                "pending": [
                    {"revision": revision, "breaks_previous_release": breaks}
                    for revision, breaks in pending or []
                ],
            }
        )
    )

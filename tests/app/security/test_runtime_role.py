"""The app logged in as a database role that may only change rows: what roles/postgres
grants the service's runtime role in production (the grant list is read from the role),
so app code that needs DDL, TRUNCATE or ownership at run time fails here first."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from app.core.config import Settings
from app.core.db import get_engine, sync_database_url
from app.main import create_app
from tests.app.utils.documents import make_project, upload, wait_until_done
from tests.app.utils.samples import make_markdown

ROLE_VARS = Path(__file__).resolve().parents[3] / "roles" / "postgres" / "vars" / "main.yml"


@pytest.fixture(scope="module")
def runtime_role(settings: Settings) -> Iterator[str]:
    """A login role with exactly the runtime grants on the session's migrated database."""
    role = f"kt_runtime_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    grants = yaml.safe_load(ROLE_VARS.read_text())["postgres_runtime_privileges"]
    database = make_url(settings.database_url).database
    engine = create_engine(sync_database_url(settings), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        connection.execute(text(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"'))
        connection.execute(text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
        for grant in grants:
            connection.execute(
                text(
                    f"GRANT {grant['privs']} ON ALL {grant['type'].upper()}S "
                    f'IN SCHEMA public TO "{role}"'
                )
            )
    yield role
    with engine.connect() as connection:
        connection.execute(text(f'DROP OWNED BY "{role}"'))  # its grants
        connection.execute(text(f'DROP ROLE "{role}"'))
    engine.dispose()


def runtime_url(settings: Settings, role: str) -> str:
    return make_url(settings.database_url).set(username=role).render_as_string(False)


@pytest.fixture
def app(settings: Settings, runtime_role: str):
    """The `client` and `user_factory` fixtures use this app: logged in as the role."""
    return create_app(
        settings.model_copy(update={"database_url": runtime_url(settings, runtime_role)})
    )


async def test_the_app_works_as_a_role_that_may_only_change_rows(
    client, user_factory, tmp_path, settings: Settings, runtime_role: str
) -> None:
    user = await user_factory()
    async with get_engine(settings).connect() as connection:  # the test's own, as owner
        sessions = await connection.scalar(
            text("SELECT count(*) FROM pg_stat_activity WHERE usename = :role"),
            {"role": runtime_role},
        )
    assert sessions, "the app did not log in as the runtime role"
    ready = (await client.get("/readyz")).json()
    assert ready["checks"]["migrations"]["ok"] is True, ready  # reads alembic_version
    project_id = await make_project(client, user)
    response = await upload(client, user, project_id, make_markdown(tmp_path))
    assert response.status_code == 202, response.text
    document_id = response.json()[0]["id"]
    # Ingestion writes chunks; migration 0008's triggers keep the term statistics as the
    # invoking role.
    done = await wait_until_done(client, user, project_id, document_id)
    assert done["status"] == "ready", done
    answer = await client.post(
        "/api/chat",
        json={"message": "Which port must be open?", "project_id": project_id},
        headers=user.headers,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["message"]["sources"]
    for path in (
        f"/api/projects/{project_id}/documents/{document_id}",
        f"/api/projects/{project_id}",
    ):
        deleted = await client.delete(path, headers=user.headers)
        assert deleted.status_code == 204, deleted.text


@pytest.mark.parametrize(
    "statement",
    [
        "TRUNCATE users",
        "DROP TABLE users",
        "ALTER TABLE users ADD COLUMN x int",
        "CREATE TABLE x (i int)",
    ],
)
def test_the_role_cannot_change_the_schema(settings: Settings, runtime_role: str, statement: str):
    runtime = settings.model_copy(update={"database_url": runtime_url(settings, runtime_role)})
    engine = create_engine(sync_database_url(runtime))
    try:
        with engine.connect() as connection, pytest.raises(ProgrammingError) as refused:
            connection.execute(text(statement))
    finally:
        engine.dispose()
    assert "permission denied" in str(refused.value) or "must be owner" in str(refused.value)

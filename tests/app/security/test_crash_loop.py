"""One bad document cannot crash-loop the app: a document found 'processing' at start-up
(its processing stopped the process) is taken up again only INGEST_MAX_ATTEMPTS times,
then marked failed with the reason."""

from __future__ import annotations

from sqlalchemy import text

from app.services.ingestion.worker import GAVE_UP
from tests.app.utils import samples
from tests.app.utils.documents import make_project, upload, wait_until_done


async def _uploaded(client, user, tmp_path) -> tuple[str, str]:
    project_id = await make_project(client, user)
    [document] = (await upload(client, user, project_id, samples.make_markdown(tmp_path))).json()
    assert (await wait_until_done(client, user, project_id, document["id"]))["status"] == "ready"
    return project_id, document["id"]


async def _interrupted(db_session, document_id: str, attempts: int) -> None:
    """As a process that died while processing it leaves it."""
    await db_session.execute(
        text("UPDATE documents SET status = 'processing', attempts = :n WHERE id = :id"),
        {"n": attempts, "id": document_id},
    )
    await db_session.commit()


async def test_each_claim_counts_an_attempt(client, user_factory, tmp_path, db_session):
    user = await user_factory()
    _project_id, document_id = await _uploaded(client, user, tmp_path)
    attempts = await db_session.scalar(
        text("SELECT attempts FROM documents WHERE id = :id"), {"id": document_id}
    )
    assert attempts == 1


async def test_a_document_that_keeps_killing_the_app_is_given_up(
    app, client, user_factory, tmp_path, db_session, settings
):
    user = await user_factory()
    project_id, document_id = await _uploaded(client, user, tmp_path)

    await _interrupted(db_session, document_id, attempts=settings.ingest_max_attempts - 1)
    assert await app.state.ingest_worker.requeue_orphans() == 1  # one more try
    done = await wait_until_done(client, user, project_id, document_id)
    assert done["status"] == "ready"

    await _interrupted(db_session, document_id, attempts=settings.ingest_max_attempts)
    assert await app.state.ingest_worker.requeue_orphans() == 0
    response = await client.get(
        f"/api/projects/{project_id}/documents/{document_id}", headers=user.headers
    )
    assert response.json()["status"] == "failed"
    assert response.json()["error"] == GAVE_UP

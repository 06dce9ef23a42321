"""A deleted document's text does not live on: the passages saved with chat answers lose
it, artifacts drop it from their sources, and regenerating never sends it again."""

from __future__ import annotations

from sqlalchemy import text

from app.services.documents import DELETED_SOURCE_TEXT
from tests.app.utils.chat import ask
from tests.app.utils.indexed_project import index_project

REFUND_TEXT = "Customers may ask for a refund within 30 days"


async def test_deleted_document_text_is_forgotten(
    chat_client, anthropic_fake, user_factory, settings, db_session
):
    user = await user_factory()
    project = await index_project(chat_client, user.headers, settings)
    await ask(chat_client, user.headers, "How long do I have to ask for a refund?",
              project_id=str(project.id))  # fmt: skip
    artifact = await chat_client.post(
        "/api/artifacts",
        json={"request": "Draft a refund FAQ", "project_id": str(project.id)},
        headers=user.headers,
    )
    assert artifact.status_code == 201, artifact.text
    saved = await db_session.scalar(
        text("SELECT count(*) FROM message_sources WHERE text LIKE :t"), {"t": f"{REFUND_TEXT}%"}
    )
    assert saved >= 1  # the answer kept the passage ...

    refund_id = project.document_ids["refund-policy.pdf"]
    response = await chat_client.delete(
        f"/api/projects/{project.id}/documents/{refund_id}", headers=user.headers
    )
    assert response.status_code == 204

    # ... until the document was deleted: the citation stays, its text is gone.
    rows = (
        await db_session.execute(
            text("SELECT text FROM message_sources WHERE document_id = :d"), {"d": refund_id}
        )
    ).all()
    assert rows and all(row.text == DELETED_SOURCE_TEXT for row in rows)
    sources = await db_session.scalar(
        text("SELECT sources::text FROM artifacts WHERE id = :a"), {"a": artifact.json()["id"]}
    )
    assert str(refund_id) not in sources and REFUND_TEXT not in sources

    anthropic_fake.requests.clear()
    regenerated = await chat_client.post(
        f"/api/artifacts/{artifact.json()['id']}/regenerate", headers=user.headers
    )
    assert regenerated.status_code == 200, regenerated.text
    sent = anthropic_fake.requests[-1]
    assert REFUND_TEXT not in sent.last_user_text and REFUND_TEXT not in sent.system

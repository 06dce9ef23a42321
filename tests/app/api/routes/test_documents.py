"""Document upload, background ingestion, status, dedup, deletion and isolation.

Everything is real: multipart uploads through the app, parsing of generated PDF/DOCX/
Markdown/HTML files, embeddings from the packaged model, chunks in pgvector.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from app.core.config import Settings
from tests.app.utils import samples
from tests.app.utils.documents import make_project, upload, wait_until_done

pytestmark = pytest.mark.timeout(300)


async def chunk_rows(db_session, document_id: str) -> list:
    result = await db_session.execute(
        text(
            "SELECT text, metadata_, project_id, document_id FROM data_chunks "
            "WHERE document_id = :id ORDER BY (metadata_->>'chunk_index')::int"
        ),
        {"id": uuid.UUID(document_id)},
    )
    return result.all()


def stored_files(settings: Settings) -> list[Path]:
    root = settings.uploads_dir
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


# --- happy paths --------------------------------------------------------------------------


async def test_pdf_upload_becomes_ready_with_page_numbers(
    client, user_factory, tmp_path, db_session, settings
):
    user = await user_factory()
    project_id = await make_project(client, user)
    response = await upload(client, user, project_id, samples.make_pdf(tmp_path))
    assert response.status_code == 202, response.text
    [created] = response.json()
    assert created["status"] in {"queued", "processing"}
    assert created["duplicate"] is False
    assert created["kind"] == "pdf"

    seen: list = []
    document = await wait_until_done(client, user, project_id, created["id"], seen)
    assert document["status"] == "ready", document["error"]
    assert document["progress"] == 100
    assert document["page_count"] == 2
    assert document["chunk_count"] >= 2
    # Progress only moves forward while processing.
    progresses = [p for status_, p in seen if status_ == "processing"]
    assert progresses == sorted(progresses)

    rows = await chunk_rows(db_session, created["id"])
    assert len(rows) == document["chunk_count"]
    pages = {row.metadata_["page"] for row in rows}
    assert pages == {1, 2}
    first = rows[0]
    assert "lighthouse keeper" in first.text
    assert first.metadata_["filename"] == "lighthouse.pdf"
    assert first.metadata_["owner_id"] == str(user.id)
    assert str(first.project_id) == project_id
    assert str(first.document_id) == created["id"]


@pytest.mark.parametrize(
    ("maker", "kind", "expected_heading"),
    [
        (samples.make_docx, "docx", "Employee Handbook > Holidays"),
        (samples.make_markdown, "markdown", "Install Guide > On Debian > Firewall"),
        (samples.make_html, "html", "Gardening > Pests"),
    ],
)
async def test_structured_documents_keep_headings(
    client, user_factory, tmp_path, db_session, maker, kind, expected_heading
):
    user = await user_factory()
    project_id = await make_project(client, user)
    response = await upload(client, user, project_id, maker(tmp_path))
    assert response.status_code == 202, response.text
    [created] = response.json()
    assert created["kind"] == kind
    document = await wait_until_done(client, user, project_id, created["id"])
    assert document["status"] == "ready", document["error"]
    rows = await chunk_rows(db_session, created["id"])
    headings = {row.metadata_["heading"] for row in rows}
    assert expected_heading in headings
    all_text = " ".join(row.text for row in rows)
    assert "do not index me" not in all_text and "tracking code" not in all_text


async def test_several_files_in_one_request(client, user_factory, tmp_path):
    user = await user_factory()
    project_id = await make_project(client, user)
    paths = [samples.make_markdown(tmp_path), samples.make_html(tmp_path)]
    response = await upload(client, user, project_id, *paths)
    assert response.status_code == 202, response.text
    created = response.json()
    assert [d["filename"] for d in created] == ["guide.md", "page.html"]
    for document in created:
        done = await wait_until_done(client, user, project_id, document["id"])
        assert done["status"] == "ready"
    listing = await client.get(f"/api/projects/{project_id}/documents", headers=user.headers)
    assert {d["filename"] for d in listing.json()} == {"guide.md", "page.html"}


async def test_non_utf8_text_is_decoded(client, user_factory, tmp_path, db_session):
    user = await user_factory()
    project_id = await make_project(client, user)
    response = await upload(client, user, project_id, samples.make_cp1252_text(tmp_path))
    assert response.status_code == 202, response.text
    [created] = response.json()
    document = await wait_until_done(client, user, project_id, created["id"])
    assert document["status"] == "ready", document["error"]
    rows = await chunk_rows(db_session, created["id"])
    assert "Crème brûlée à la française" in rows[0].text


async def test_same_content_twice_is_one_document(client, user_factory, tmp_path, settings):
    user = await user_factory()
    project_id = await make_project(client, user)
    path = samples.make_markdown(tmp_path)
    first = (await upload(client, user, project_id, path)).json()[0]
    renamed = tmp_path / "copy-of-guide.md"
    renamed.write_bytes(path.read_bytes())
    second = await upload(client, user, project_id, renamed)
    assert second.status_code == 202
    [again] = second.json()
    assert again["id"] == first["id"]
    assert again["duplicate"] is True
    listing = await client.get(f"/api/projects/{project_id}/documents", headers=user.headers)
    assert len(listing.json()) == 1
    await wait_until_done(client, user, project_id, first["id"])
    assert len(stored_files(settings)) == 1
    # Another project may hold the same content separately.
    other = await make_project(client, user, "Other")
    [elsewhere] = (await upload(client, user, other, path)).json()
    assert elsewhere["duplicate"] is False and elsewhere["id"] != first["id"]


# --- bad input: refused up front (4xx, nothing written) ----------------------------------


@pytest.mark.parametrize(
    ("maker", "status_code", "message"),
    [
        (samples.make_empty, 422, "is empty"),
        (samples.make_executable_named_pdf, 415, "executable"),
    ],
)
async def test_bad_files_are_refused_and_nothing_is_stored(
    client, user_factory, tmp_path, settings, db_session, maker, status_code, message
):
    user = await user_factory()
    project_id = await make_project(client, user)
    good = samples.make_markdown(tmp_path)
    response = await upload(client, user, project_id, good, maker(tmp_path))
    assert response.status_code == status_code, response.text
    assert message in response.json()["detail"]
    # All-or-nothing: not even the good file of the same request was kept.
    count = await db_session.scalar(text("SELECT count(*) FROM documents"))
    assert count == 0
    assert stored_files(settings) == []


async def test_file_over_the_size_limit_is_refused(
    app, client, user_factory, tmp_path, settings, db_session
):
    app.state.settings = settings.model_copy(update={"max_upload_mb": 1})
    user = await user_factory()
    project_id = await make_project(client, user)
    big = tmp_path / "big.txt"
    big.write_bytes(b"word " * (1024 * 1024 // 5 + 10))
    response = await upload(client, user, project_id, big)
    assert response.status_code == 413, response.text
    assert "larger than the limit" in response.json()["detail"]
    assert await db_session.scalar(text("SELECT count(*) FROM documents")) == 0
    assert stored_files(settings) == []


async def test_too_many_files_and_wrong_field_are_refused(
    app, client, user_factory, tmp_path, settings
):
    app.state.settings = settings = settings.model_copy(update={"max_files_per_upload": 3})
    user = await user_factory()
    project_id = await make_project(client, user)
    path = samples.make_markdown(tmp_path)
    response = await upload(client, user, project_id, *[path] * (settings.max_files_per_upload + 1))
    assert response.status_code == 413
    assert "Too many files" in response.json()["detail"]
    response = await upload(client, user, project_id, path, field="document")
    assert response.status_code == 422
    assert "'files'" in response.json()["detail"]
    response = await client.post(
        f"/api/projects/{project_id}/documents", json={"x": 1}, headers=user.headers
    )
    assert response.status_code == 422
    assert stored_files(settings) == []


# --- bad input found while processing: failed with a reason, nothing left ---------------


@pytest.mark.parametrize(
    ("maker", "reason"),
    [
        (samples.make_corrupt_pdf, "damaged"),
        (samples.make_encrypted_pdf, "password-protected"),
        (samples.make_docx_zip_bomb, "zip bomb"),
        (samples.make_blank_pdf, "No extractable text"),
    ],
)
async def test_unreadable_documents_fail_with_a_reason(
    client, user_factory, tmp_path, settings, db_session, maker, reason
):
    user = await user_factory()
    project_id = await make_project(client, user)
    response = await upload(client, user, project_id, maker(tmp_path))
    assert response.status_code == 202, response.text
    [created] = response.json()
    document = await wait_until_done(client, user, project_id, created["id"])
    assert document["status"] == "failed"
    assert reason in document["error"]
    assert document["chunk_count"] == 0
    assert await chunk_rows(db_session, created["id"]) == []
    assert stored_files(settings) == []  # the failed upload's file is gone too


async def test_failed_content_can_be_uploaded_again(client, user_factory, tmp_path):
    user = await user_factory()
    project_id = await make_project(client, user)
    path = samples.make_corrupt_pdf(tmp_path)
    [first] = (await upload(client, user, project_id, path)).json()
    await wait_until_done(client, user, project_id, first["id"])
    [second] = (await upload(client, user, project_id, path)).json()
    assert second["duplicate"] is False and second["id"] != first["id"]
    done = await wait_until_done(client, user, project_id, second["id"])
    assert done["status"] == "failed"


# --- deletion -----------------------------------------------------------------------------


async def test_delete_document_removes_chunks_and_file(
    client, user_factory, tmp_path, settings, db_session
):
    user = await user_factory()
    project_id = await make_project(client, user)
    [keep] = (await upload(client, user, project_id, samples.make_html(tmp_path))).json()
    [gone] = (await upload(client, user, project_id, samples.make_markdown(tmp_path))).json()
    for document in (keep, gone):
        await wait_until_done(client, user, project_id, document["id"])
    assert len(stored_files(settings)) == 2

    url = f"/api/projects/{project_id}/documents/{gone['id']}"
    response = await client.delete(url, headers=user.headers)
    assert response.status_code == 204
    assert (await client.get(url, headers=user.headers)).status_code == 404
    assert await chunk_rows(db_session, gone["id"]) == []
    assert len(await chunk_rows(db_session, keep["id"])) > 0
    assert len(stored_files(settings)) == 1


async def test_delete_project_purges_documents_chunks_and_files(
    client, user_factory, tmp_path, settings, db_session
):
    user = await user_factory()
    project_id = await make_project(client, user)
    [document] = (await upload(client, user, project_id, samples.make_pdf(tmp_path))).json()
    await wait_until_done(client, user, project_id, document["id"])
    response = await client.delete(f"/api/projects/{project_id}", headers=user.headers)
    assert response.status_code == 204
    assert await db_session.scalar(text("SELECT count(*) FROM documents")) == 0
    assert await db_session.scalar(text("SELECT count(*) FROM data_chunks")) == 0
    assert stored_files(settings) == []


# --- isolation ----------------------------------------------------------------------------


async def test_other_users_documents_answer_404(client, user_factory, tmp_path, settings):
    owner = await user_factory()
    intruder = await user_factory()
    project_id = await make_project(client, owner)
    [document] = (await upload(client, owner, project_id, samples.make_markdown(tmp_path))).json()
    base = f"/api/projects/{project_id}/documents"
    for method, url in [
        ("GET", base),
        ("GET", f"{base}/{document['id']}"),
        ("DELETE", f"{base}/{document['id']}"),
    ]:
        response = await client.request(method, url, headers=intruder.headers)
        assert response.status_code == 404, (method, url)
    response = await upload(client, intruder, project_id, samples.make_html(tmp_path))
    assert response.status_code == 404
    # The intruder's own project cannot reach the owner's document either.
    own = await make_project(client, intruder, "Mine")
    url = f"/api/projects/{own}/documents/{document['id']}"
    assert (await client.get(url, headers=intruder.headers)).status_code == 404
    assert (await client.delete(url, headers=intruder.headers)).status_code == 404
    # Unauthenticated: 401.
    assert (await client.get(base)).status_code == 401
    done = await wait_until_done(client, owner, project_id, document["id"])
    assert done["status"] == "ready"

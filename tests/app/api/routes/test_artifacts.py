"""/api/artifacts: create (from a message or on request), view, edit (versioned),
regenerate, delete, export; scoped to the user."""

from __future__ import annotations

import uuid

import pytest

from app.services.llm.offline import OFFLINE_LABEL
from tests.app.utils.chat import ask
from tests.app.utils.indexed_project import index_project
from tests.fakes.anthropic_server import Script


async def test_artifact_from_an_answer_then_edit_and_versions(
    chat_client, user_factory, anthropic_fake, chat_settings
) -> None:
    user = await user_factory()
    project = await index_project(chat_client, user.headers, chat_settings)
    anthropic_fake.default = Script(text="# Refund FAQ\n\nYou have 30 days [1].")
    done = await ask(chat_client, user.headers, "Draft a refund FAQ", project_id=str(project.id))

    response = await chat_client.post(
        "/api/artifacts", json={"message_id": done["message_id"]}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    artifact = response.json()
    assert artifact["title"] == "Refund FAQ"
    assert artifact["kind"] == "markdown"
    assert artifact["content"] == "# Refund FAQ\n\nYou have 30 days [1].\n"
    assert artifact["request"] == "Draft a refund FAQ"
    assert artifact["conversation_id"] == done["conversation_id"]
    assert artifact["message_id"] == done["message_id"]
    assert artifact["current_version"] == 1
    url = f"/api/artifacts/{artifact['id']}"

    edited = await chat_client.patch(
        url, json={"content": "# Refund FAQ\n\nThirty days."}, headers=user.headers
    )
    assert edited.status_code == 200
    assert (
        edited.json()["current_version"] == 2
        and edited.json()["content"] == "# Refund FAQ\n\nThirty days."
    )
    renamed = await chat_client.patch(url, json={"title": "FAQ"}, headers=user.headers)
    assert renamed.json()["title"] == "FAQ" and renamed.json()["current_version"] == 2

    versions = (await chat_client.get(f"{url}/versions", headers=user.headers)).json()
    assert [(v["version"], v["origin"]) for v in versions] == [(1, "created"), (2, "edited")]
    assert versions[0]["content"].startswith("# Refund FAQ\n\nYou have 30 days")

    listed = (await chat_client.get("/api/artifacts", headers=user.headers)).json()
    assert [a["id"] for a in listed] == [artifact["id"]]
    by_conversation = await chat_client.get(
        "/api/artifacts", params={"conversation_id": done["conversation_id"]}, headers=user.headers
    )
    assert len(by_conversation.json()) == 1

    # Regenerate: the same request and the same sources go to the model again.
    anthropic_fake.default = Script(text="# Refund FAQ v3\n\nRefunds within 30 days [1].")
    regenerated = await chat_client.post(f"{url}/regenerate", headers=user.headers)
    assert regenerated.status_code == 200, regenerated.text
    assert regenerated.json()["current_version"] == 3
    assert regenerated.json()["content"].startswith("# Refund FAQ v3")
    sent = anthropic_fake.requests[-1]
    assert sent.last_user_text.endswith("<request>\nDraft a refund FAQ\n</request>")
    assert "[1] refund-policy.pdf, page 1" in sent.last_user_text
    assert "Markdown document" in sent.system and "refund-policy" not in sent.system
    versions = (await chat_client.get(f"{url}/versions", headers=user.headers)).json()
    assert [v["origin"] for v in versions] == ["created", "edited", "regenerated"]

    export = await chat_client.get(f"{url}/export", headers=user.headers)
    assert export.status_code == 200
    assert export.headers["content-disposition"] == 'attachment; filename="faq.md"'
    assert export.text.startswith("# FAQ\n\n# Refund FAQ v3")
    assert "## Sources" in export.text and "[1] refund-policy.pdf, page 1" in export.text
    old = await chat_client.get(f"{url}/export", params={"version": 2}, headers=user.headers)
    assert "Thirty days." in old.text and "*Version 2," in old.text
    missing = await chat_client.get(f"{url}/export", params={"version": 9}, headers=user.headers)
    assert missing.status_code == 404

    assert (await chat_client.delete(url, headers=user.headers)).status_code == 204
    assert (await chat_client.get(url, headers=user.headers)).status_code == 404


async def test_artifact_on_request_uses_retrieved_passages(
    chat_client, user_factory, anthropic_fake, chat_settings
) -> None:
    user = await user_factory()
    project = await index_project(chat_client, user.headers, chat_settings)
    anthropic_fake.default = Script(text="| Topic | Rule |\n|---|---|\n| Refunds | 30 days [1] |")
    response = await chat_client.post(
        "/api/artifacts",
        json={
            "request": "Summarise the refund rules as a table",
            "kind": "table",
            "project_id": str(project.id),
            "max_context_chunks": 2,
        },
        headers=user.headers,
    )
    assert response.status_code == 201, response.text
    artifact = response.json()
    assert (
        artifact["kind"] == "table" and artifact["title"] == "Summarise the refund rules as a table"
    )
    assert artifact["content"].startswith("| Topic | Rule |")
    sent = anthropic_fake.requests[-1]
    assert "Markdown table" in sent.system and "[1] refund-policy.pdf" in sent.last_user_text
    assert sent.body["stream"] is True


async def test_code_artifact_loses_stray_fences(chat_client, user_factory, anthropic_fake) -> None:
    user = await user_factory()
    anthropic_fake.default = Script(text="```python\nprint('hi')\n```")
    response = await chat_client.post(
        "/api/artifacts",
        json={"request": "a hello world script", "kind": "code", "title": "Hello"},
        headers=user.headers,
    )
    assert response.status_code == 201
    assert response.json()["content"] == "print('hi')"
    export = await chat_client.get(
        f"/api/artifacts/{response.json()['id']}/export", headers=user.headers
    )
    assert "```\nprint('hi')\n```" in export.text


async def test_model_failure_is_a_clear_503_and_changes_nothing(
    chat_client, chat_app, user_factory, anthropic_fake
) -> None:
    chat_app.state.settings = chat_app.state.settings.model_copy(update={"chat_max_retries": 0})
    user = await user_factory()
    anthropic_fake.default = Script(failure="overloaded")
    response = await chat_client.post(
        "/api/artifacts", json={"request": "draft a FAQ"}, headers=user.headers
    )
    assert response.status_code == 503
    assert response.json()["detail"]["retryable"] is True
    assert "overloaded" in response.json()["detail"]["message"]
    assert (await chat_client.get("/api/artifacts", headers=user.headers)).json() == []

    anthropic_fake.default = Script(text="v1")
    created = (
        await chat_client.post(
            "/api/artifacts", json={"request": "draft a FAQ"}, headers=user.headers
        )
    ).json()
    anthropic_fake.default = Script(failure="rate_limit")
    failed = await chat_client.post(
        f"/api/artifacts/{created['id']}/regenerate", headers=user.headers
    )
    assert failed.status_code == 503
    versions = await chat_client.get(
        f"/api/artifacts/{created['id']}/versions", headers=user.headers
    )
    assert len(versions.json()) == 1


async def test_offline_artifact_is_labelled(offline_client, user_factory, settings) -> None:
    user = await user_factory()
    project = await index_project(offline_client, user.headers, settings)
    response = await offline_client.post(
        "/api/artifacts",
        json={"request": "draft a refund FAQ", "project_id": str(project.id)},
        headers=user.headers,
    )
    assert response.status_code == 201
    assert response.json()["content"].startswith(OFFLINE_LABEL)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"message_id": str(uuid.uuid4()), "request": "both"},
        {"request": ""},
        {"request": "x", "kind": "spreadsheet"},
        {"request": "x", "max_context_chunks": 50},
        {"request": "x", "model": "not-allowed"},
    ],
)
async def test_bad_create_requests_are_422(chat_client, user_factory, body) -> None:
    user = await user_factory()
    response = await chat_client.post("/api/artifacts", json=body, headers=user.headers)
    assert response.status_code == 422, response.text


async def test_edit_needs_something_to_change(chat_client, user_factory) -> None:
    user = await user_factory()
    created = (
        await chat_client.post("/api/artifacts", json={"request": "x"}, headers=user.headers)
    ).json()
    response = await chat_client.patch(
        f"/api/artifacts/{created['id']}", json={}, headers=user.headers
    )
    assert response.status_code == 422


async def test_foreign_ids_are_404(chat_client, user_factory, chat_settings) -> None:
    owner = await user_factory()
    stranger = await user_factory()
    project = await index_project(chat_client, owner.headers, chat_settings)
    done = await ask(chat_client, owner.headers, "question", project_id=str(project.id))
    artifact = (
        await chat_client.post(
            "/api/artifacts", json={"message_id": done["message_id"]}, headers=owner.headers
        )
    ).json()
    url = f"/api/artifacts/{artifact['id']}"
    for method, path, body in [
        ("GET", url, None),
        ("PATCH", url, {"content": "mine"}),
        ("DELETE", url, None),
        ("GET", f"{url}/versions", None),
        ("POST", f"{url}/regenerate", None),
        ("GET", f"{url}/export", None),
        ("GET", f"/api/artifacts/{uuid.uuid4()}", None),
        ("POST", "/api/artifacts", {"message_id": done["message_id"]}),
        ("POST", "/api/artifacts", {"request": "x", "project_id": str(project.id)}),
        ("POST", "/api/artifacts", {"request": "x", "conversation_id": done["conversation_id"]}),
    ]:
        response = await chat_client.request(method, path, json=body, headers=stranger.headers)
        assert response.status_code == 404, (method, path, response.text)
    assert (await chat_client.get("/api/artifacts", headers=stranger.headers)).json() == []
    # A user message is not an answer to make an artifact of.
    conversation = (
        await chat_client.get(
            f"/api/conversations/{done['conversation_id']}", headers=owner.headers
        )
    ).json()
    user_message_id = conversation["messages"][0]["id"]
    response = await chat_client.post(
        "/api/artifacts", json={"message_id": user_message_id}, headers=owner.headers
    )
    assert response.status_code == 404
    assert (await chat_client.get(url, headers=owner.headers)).status_code == 200

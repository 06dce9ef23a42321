"""Another user's ids answer 404 on every route, generated from the route table.

Ann owns one of everything (a project with a document, a conversation with messages,
an artifact with two versions). Bob, logged in, calls every route of the API that
takes an id in its path, with Ann's ids, by every method the route has: each answer
must be 404 (403 "Admins only" on /api/admin), and Ann's things must be intact
afterwards. A new route with an id in its path is covered without a change here; a
new kind of id fails the test until its owner is given below (so nobody can add one and
forget the ownership check). Ids carried in bodies and query strings are listed
explicitly underneath.
"""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute

from app.api.routes import API_ROUTERS
from app.main import API_PREFIX
from tests.app.utils.documents import make_project, upload

_PATH_PARAM = re.compile(r"{(\w+)}")


def _routes_with_ids() -> list[tuple[str, str]]:
    routes = {
        (method, API_PREFIX + route.path)
        for router in API_ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute) and _PATH_PARAM.search(route.path)
        for method in route.methods
    }
    return sorted(routes, key=lambda item: (item[1], item[0]))


@pytest.fixture
async def anns_things(client, user_factory, tmp_path) -> tuple[object, dict[str, str]]:
    ann = await user_factory(email="ann@example.com")
    project_id = await make_project(client, ann)
    path = tmp_path / "notes.txt"
    path.write_text("Ann's private notes about the harvest.\n")
    [document] = (await upload(client, ann, project_id, path)).json()
    chat = await client.post(
        "/api/chat",
        json={"message": "What about the harvest?", "project_id": project_id},
        headers=ann.headers,
    )
    assert chat.status_code == 200, chat.text
    answer = chat.json()
    artifact = await client.post(
        "/api/artifacts", json={"message_id": answer["message"]["id"]}, headers=ann.headers
    )
    assert artifact.status_code == 201, artifact.text
    artifact_id = artifact.json()["id"]
    edited = await client.patch(
        f"/api/artifacts/{artifact_id}", json={"content": "v2"}, headers=ann.headers
    )
    assert edited.json()["current_version"] == 2
    return ann, {
        "project_id": project_id,
        "document_id": document["id"],
        "conversation_id": answer["conversation_id"],
        "message_id": answer["message"]["id"],
        "user_message_id": answer["user_message_id"],
        "artifact_id": artifact_id,
        "user_id": str(ann.id),  # admin routes only
    }


async def test_every_route_with_an_id_answers_404_to_another_user(
    client, user_factory, anns_things
):
    ann, ids = anns_things
    bob = await user_factory(email="bob@example.com")
    routes = _routes_with_ids()
    assert len(routes) >= 15  # the walk found the routes (guards against an empty table)
    bobs_project = await make_project(client, bob)
    for method, template in routes:
        names = _PATH_PARAM.findall(template)
        unknown = [name for name in names if name not in ids]
        assert not unknown, f"{method} {template}: whose {unknown}? add it to anns_things"
        attempts = [ids]
        if "project_id" in names and len(names) > 1:
            # Bob's own project with Ann's document: the child must belong to the parent.
            attempts.append({**ids, "project_id": bobs_project})
        for values in attempts:
            path = template.format(**values)
            body = {"json": {}} if method in {"POST", "PATCH", "PUT"} else {}
            response = await client.request(method, path, headers=bob.headers, **body)
            # /api/admin is not about owners: anybody but an admin gets 403 "Admins only".
            expected = 403 if template.startswith(f"{API_PREFIX}/admin/") else 404
            assert response.status_code == expected, f"{method} {path}: {response.status_code}"
            assert "ann" not in response.text.lower()

    # Nothing of Ann's changed (Bob's DELETEs and PATCHes did nothing).
    for path in (
        f"/api/projects/{ids['project_id']}",
        f"/api/projects/{ids['project_id']}/documents/{ids['document_id']}",
        f"/api/conversations/{ids['conversation_id']}",
        f"/api/artifacts/{ids['artifact_id']}",
    ):
        assert (await client.get(path, headers=ann.headers)).status_code == 200, path


async def test_ids_in_bodies_and_queries_are_not_followed_for_another_user(
    client, user_factory, anns_things
):
    _ann, ids = anns_things
    bob = await user_factory(email="bob@example.com")
    refused = [
        ("POST", "/api/chat", {"message": "hi", "project_id": ids["project_id"]}),
        ("POST", "/api/chat", {"message": "hi", "conversation_id": ids["conversation_id"]}),
        ("POST", "/api/chat/stream", {"message": "hi", "project_id": ids["project_id"]}),
        ("POST", "/api/artifacts", {"message_id": ids["message_id"]}),
        ("POST", "/api/artifacts", {"message_id": ids["user_message_id"]}),
        ("POST", "/api/artifacts", {"request": "a FAQ", "project_id": ids["project_id"]}),
        (
            "POST",
            "/api/artifacts",
            {"request": "a FAQ", "conversation_id": ids["conversation_id"]},
        ),
    ]
    for method, path, body in refused:
        response = await client.request(method, path, json=body, headers=bob.headers)
        assert response.status_code == 404, f"{method} {path} {body}: {response.status_code}"
    # Filters by another user's id find nothing of theirs.
    for path in (
        f"/api/conversations?project_id={ids['project_id']}",
        f"/api/artifacts?conversation_id={ids['conversation_id']}",
    ):
        response = await client.get(path, headers=bob.headers)
        assert response.status_code == 404 or response.json() == [], path

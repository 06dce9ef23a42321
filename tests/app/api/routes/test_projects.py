"""Projects API: CRUD, validation, and isolation between users."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from app.models.project import Project

PROJECTS = "/api/projects"


async def test_create_list_get_update_delete(client, user_factory):
    user = await user_factory()
    response = await client.post(
        PROJECTS, json={"name": "  Handbook ", "description": "HR docs"}, headers=user.headers
    )
    assert response.status_code == 201
    project = response.json()
    assert project["name"] == "Handbook"  # surrounding whitespace dropped
    assert project["description"] == "HR docs"

    await client.post(PROJECTS, json={"name": "Architecture"}, headers=user.headers)
    listed = (await client.get(PROJECTS, headers=user.headers)).json()
    assert [p["name"] for p in listed] == ["Architecture", "Handbook"]

    url = f"{PROJECTS}/{project['id']}"
    assert (await client.get(url, headers=user.headers)).json()["name"] == "Handbook"

    response = await client.patch(url, json={"name": "Staff handbook"}, headers=user.headers)
    assert response.status_code == 200
    assert response.json()["name"] == "Staff handbook"
    assert response.json()["description"] == "HR docs"
    assert response.json()["updated_at"] >= project["updated_at"]

    response = await client.patch(url, json={"description": ""}, headers=user.headers)
    assert response.json()["description"] == ""
    assert response.json()["name"] == "Staff handbook"

    assert (await client.delete(url, headers=user.headers)).status_code == 204
    assert (await client.get(url, headers=user.headers)).status_code == 404
    assert len((await client.get(PROJECTS, headers=user.headers)).json()) == 1


async def test_duplicate_name_is_409(client, user_factory):
    user = await user_factory()
    await client.post(PROJECTS, json={"name": "Notes"}, headers=user.headers)
    response = await client.post(PROJECTS, json={"name": "Notes"}, headers=user.headers)
    assert response.status_code == 409
    assert "Notes" in response.json()["detail"]

    other = (await client.post(PROJECTS, json={"name": "Other"}, headers=user.headers)).json()
    response = await client.patch(
        f"{PROJECTS}/{other['id']}", json={"name": "Notes"}, headers=user.headers
    )
    assert response.status_code == 409


async def test_two_users_may_use_the_same_name(client, user_factory):
    ann, bob = await user_factory(), await user_factory()
    for user in (ann, bob):
        response = await client.post(PROJECTS, json={"name": "Notes"}, headers=user.headers)
        assert response.status_code == 201


async def test_validation_errors_name_the_field(client, user_factory):
    user = await user_factory()
    for body in ({}, {"name": ""}, {"name": "   "}, {"name": "x" * 201}):
        response = await client.post(PROJECTS, json=body, headers=user.headers)
        assert response.status_code == 422, body
        assert response.json()["detail"][0]["loc"] == ["body", "name"]

    project = (await client.post(PROJECTS, json={"name": "P"}, headers=user.headers)).json()
    response = await client.patch(f"{PROJECTS}/{project['id']}", json={}, headers=user.headers)
    assert response.status_code == 422
    assert "at least one" in response.json()["detail"][0]["msg"]

    response = await client.get(f"{PROJECTS}/not-a-uuid", headers=user.headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "project_id"]


async def test_requires_authentication(client):
    assert (await client.get(PROJECTS)).status_code == 401
    assert (await client.post(PROJECTS, json={"name": "x"})).status_code == 401


async def test_other_users_projects_are_404(client, user_factory, db_session):
    ann, bob = await user_factory(), await user_factory()
    project = (await client.post(PROJECTS, json={"name": "Secret"}, headers=ann.headers)).json()
    url = f"{PROJECTS}/{project['id']}"

    assert (await client.get(PROJECTS, headers=bob.headers)).json() == []
    responses = [
        await client.get(url, headers=bob.headers),
        await client.patch(url, json={"name": "Mine now"}, headers=bob.headers),
        await client.delete(url, headers=bob.headers),
    ]
    unknown = await client.get(f"{PROJECTS}/{uuid.uuid4()}", headers=bob.headers)
    for response in [*responses, unknown]:
        assert response.status_code == 404
        assert response.json() == {"detail": "Project not found"}

    # Nothing changed for the owner.
    assert (await client.get(url, headers=ann.headers)).json()["name"] == "Secret"


async def test_deleting_a_user_deletes_their_projects(client, user_factory, db_session):
    from sqlalchemy import text

    user = await user_factory()
    await client.post(PROJECTS, json={"name": "P"}, headers=user.headers)
    await db_session.execute(text("DELETE FROM users WHERE id = :id"), {"id": user.id})
    await db_session.commit()
    assert await db_session.scalar(select(func.count()).select_from(Project)) == 0

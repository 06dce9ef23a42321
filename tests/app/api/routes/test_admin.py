"""/api/admin: users (plan, usage, disable/enable), registration mode, failed documents."""

from __future__ import annotations

import uuid

import pytest

from tests.app.utils import samples
from tests.app.utils.documents import make_project, upload, wait_until_done

USERS = "/api/admin/users"


async def test_users_lists_plan_usage_and_documents(
    billing_client, user_factory, set_usage, tmp_path
):
    admin = await user_factory(is_admin=True)
    user = await user_factory("Someone@Example.com")
    await set_usage(user.id, 7)
    project_id = await make_project(billing_client, user)
    response = await upload(billing_client, user, project_id, samples.make_corrupt_pdf(tmp_path))
    assert response.status_code == 202, response.text

    response = await billing_client.get(USERS, headers=admin.headers)
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["total"] == 2
    listed = {item["email"]: item for item in page["items"]}
    someone = listed["someone@example.com"]
    assert someone["plan"] == "free"
    assert someone["messages_used"] == 7
    assert someone["messages_limit"] == 100
    assert someone["documents"] == 1
    assert someone["storage_bytes"] > 0
    assert someone["is_active"] is True and someone["is_admin"] is False
    assert listed[admin.email]["is_admin"] is True


async def test_users_search_by_part_of_the_address_and_pages(client, user_factory):
    admin = await user_factory("boss@example.com", is_admin=True)
    for name in ("ann", "anna", "bob"):
        await user_factory(f"{name}@example.org")
    found = (await client.get(USERS, params={"q": "ANN"}, headers=admin.headers)).json()
    assert sorted(item["email"] for item in found["items"]) == [
        "ann@example.org",
        "anna@example.org",
    ]
    # LIKE's wildcards are taken literally.
    none = (await client.get(USERS, params={"q": "%"}, headers=admin.headers)).json()
    assert none == {"items": [], "total": 0}
    first = (await client.get(USERS, params={"limit": 2}, headers=admin.headers)).json()
    rest = (await client.get(USERS, params={"limit": 2, "offset": 2}, headers=admin.headers)).json()
    assert first["total"] == rest["total"] == 4
    assert len(first["items"]) == 2 and len(rest["items"]) == 2
    assert not {i["id"] for i in first["items"]} & {i["id"] for i in rest["items"]}


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 201},
        {"offset": -1},
        {"limit": "many"},
        {"q": "x" * 321},
        {"q": "a\x00b"},  # Postgres cannot compare text with NUL: 422, not 500
    ],
)
async def test_users_bad_query_is_422(client, user_factory, params):
    admin = await user_factory(is_admin=True)
    response = await client.get(USERS, params=params, headers=admin.headers)
    assert response.status_code == 422, response.text


async def test_a_disabled_user_cannot_log_in_and_their_sessions_end(client, user_factory):
    admin = await user_factory(is_admin=True)
    user = await user_factory()
    response = await client.patch(
        f"{USERS}/{user.id}", json={"is_active": False}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["is_active"] is False

    assert (await client.get("/api/auth/me", headers=user.headers)).status_code == 401
    refresh = await client.post("/api/auth/refresh", json={"refresh_token": user.refresh_token})
    assert refresh.status_code == 401
    login = await client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password}
    )
    assert login.status_code == 401

    response = await client.patch(
        f"{USERS}/{user.id}", json={"is_active": True}, headers=admin.headers
    )
    assert response.status_code == 200 and response.json()["is_active"] is True
    login = await client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password}
    )
    assert login.status_code == 200, login.text
    # The old refresh token stays revoked: enabling does not bring back the old sessions.
    refresh = await client.post("/api/auth/refresh", json={"refresh_token": user.refresh_token})
    assert refresh.status_code == 401


async def test_an_admin_cannot_disable_themselves(client, user_factory):
    admin = await user_factory(is_admin=True)
    response = await client.patch(
        f"{USERS}/{admin.id}", json={"is_active": False}, headers=admin.headers
    )
    assert response.status_code == 409
    assert "your own account" in response.json()["detail"]
    assert (await client.get("/api/auth/me", headers=admin.headers)).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (f"{USERS}/{uuid.uuid4()}", {"is_active": False}, 404),
        (f"{USERS}/not-a-uuid", {"is_active": False}, 422),
        (f"{USERS}/{uuid.uuid4()}", {}, 422),
        (f"{USERS}/{uuid.uuid4()}", {"is_active": "maybe"}, 422),
    ],
)
async def test_update_user_bad_input(client, user_factory, path, body, status):
    admin = await user_factory(is_admin=True)
    response = await client.patch(path, json=body, headers=admin.headers)
    assert response.status_code == status, response.text


async def test_failed_documents_across_users_with_their_reason(client, user_factory, tmp_path):
    admin = await user_factory(is_admin=True)
    owners = [await user_factory(), await user_factory()]
    for owner in owners:
        project_id = await make_project(client, owner, name="Papers")
        [created] = (
            await upload(client, owner, project_id, samples.make_encrypted_pdf(tmp_path))
        ).json()
        assert (await wait_until_done(client, owner, project_id, created["id"]))[
            "status"
        ] == "failed"

    response = await client.get("/api/admin/documents/failed", headers=admin.headers)
    assert response.status_code == 200, response.text
    failed = response.json()
    assert sorted(item["owner_email"] for item in failed) == sorted(o.email for o in owners)
    assert all("password-protected" in item["error"] for item in failed)
    assert {item["project_name"] for item in failed} == {"Papers"}
    assert (
        await client.get("/api/admin/documents/failed", params={"limit": 0}, headers=admin.headers)
    ).status_code == 422


@pytest.mark.parametrize("mode", ["open", "invite-only", "closed"])
async def test_registration_mode_is_shown(app, client, settings, user_factory, mode):
    admin = await user_factory(is_admin=True)
    app.state.settings = settings.model_copy(update={"registration_mode": mode})
    response = await client.get("/api/admin/registration", headers=admin.headers)
    assert response.status_code == 200
    assert response.json() == {"mode": mode}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", USERS),
        ("PATCH", f"{USERS}/{uuid.uuid4()}"),
        ("GET", "/api/admin/documents/failed"),
        ("GET", "/api/admin/registration"),
    ],
)
async def test_admin_routes_refuse_others(client, user_factory, method, path):
    user = await user_factory()
    body = {"is_active": False} if method == "PATCH" else None
    response = await client.request(method, path, json=body, headers=user.headers)
    assert response.status_code == 403
    assert response.json()["detail"] == "Admins only"
    assert (await client.request(method, path, json=body)).status_code == 401

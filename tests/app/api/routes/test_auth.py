"""Accounts API: register, login, refresh (rotation + reuse detection), logout, me."""

from __future__ import annotations

import uuid
from datetime import timedelta

import jwt
from sqlalchemy import func, select, text

from app.api.deps import CurrentAdmin
from app.core.security import create_access_token, hash_password, verify_password
from app.models.user import RefreshToken, User
from app.services import accounts
from tests.app.utils.users import TEST_PASSWORD

REGISTER = "/api/auth/register"
LOGIN = "/api/auth/login"
REFRESH = "/api/auth/refresh"
LOGOUT = "/api/auth/logout"
ME = "/api/auth/me"


def _field_errors(response) -> set[tuple[str, ...]]:
    return {tuple(str(part) for part in error["loc"]) for error in response.json()["detail"]}


async def test_register_login_me(client):
    response = await client.post(
        REGISTER, json={"email": "Ann@Example.com", "password": TEST_PASSWORD}
    )
    assert response.status_code == 202
    assert TEST_PASSWORD not in response.text

    response = await client.post(
        LOGIN, json={"email": "ANN@example.com", "password": TEST_PASSWORD}
    )
    assert response.status_code == 200
    tokens = response.json()
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 15 * 60

    response = await client.get(ME, headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert response.status_code == 200
    assert response.json()["email"] == "ann@example.com"


async def test_password_is_stored_as_argon2_hash(client, db_session):
    await client.post(REGISTER, json={"email": "a@example.com", "password": TEST_PASSWORD})
    user = await db_session.scalar(select(User))
    assert user.password_hash.startswith("$argon2id$")
    assert TEST_PASSWORD not in user.password_hash


async def test_registration_does_not_tell_whether_the_address_has_an_account(
    client, user_factory, db_session
):
    bob = await user_factory(email="bob@example.com")
    new = await client.post(REGISTER, json={"email": "new@example.com", "password": TEST_PASSWORD})
    taken = await client.post(
        REGISTER, json={"email": "BOB@example.com", "password": "another password 1"}
    )
    assert (taken.status_code, taken.json()) == (new.status_code, new.json())
    assert taken.status_code == 202
    # Nothing changed for the existing account: its password is still the old one.
    response = await client.post(LOGIN, json={"email": bob.email, "password": TEST_PASSWORD})
    assert response.status_code == 200
    assert await db_session.scalar(select(func.count()).select_from(User)) == 2


async def test_registration_hashes_the_password_even_for_a_taken_address(
    client, user_factory, monkeypatch
):
    """Same work either way (the timing benchmark in bench/auth_timing.py measures it)."""
    await user_factory(email="bob@example.com")
    hashed: list[str] = []
    real_hash = accounts.hash_password_async

    async def counting_hash(password: str) -> str:
        hashed.append(password)
        return await real_hash(password)

    monkeypatch.setattr(accounts, "hash_password_async", counting_hash)
    await client.post(REGISTER, json={"email": "bob@example.com", "password": "another pw 123"})
    await client.post(REGISTER, json={"email": "eve@example.com", "password": "another pw 456"})
    assert hashed == ["another pw 123", "another pw 456"]


async def test_weak_password_is_422_naming_the_field(client):
    response = await client.post(REGISTER, json={"email": "c@example.com", "password": "short"})
    assert response.status_code == 422
    assert ("body", "password") in _field_errors(response)


async def test_intranet_and_demo_domains_are_accepted(client):
    for email in ("demo@knowledgetree.test", "ann@wiki.internal"):
        response = await client.post(REGISTER, json={"email": email, "password": TEST_PASSWORD})
        assert response.status_code == 202, response.text


async def test_expired_refresh_tokens_are_deleted_at_login(client, user_factory, db_session):
    user = await user_factory()
    await db_session.execute(text("UPDATE refresh_tokens SET expires_at = now() - interval '1 s'"))
    await db_session.commit()
    await client.post(LOGIN, json={"email": user.email, "password": user.password})
    assert len((await db_session.scalars(select(RefreshToken))).all()) == 1


async def test_invalid_email_is_422(client):
    response = await client.post(
        REGISTER, json={"email": "not-an-email", "password": TEST_PASSWORD}
    )
    assert response.status_code == 422
    assert ("body", "email") in _field_errors(response)


async def test_missing_fields_are_422_naming_each(client):
    response = await client.post(LOGIN, json={})
    assert response.status_code == 422
    assert {("body", "email"), ("body", "password")} <= _field_errors(response)


async def test_invalid_json_is_422(client):
    response = await client.post(
        LOGIN, content=b'{"email": "a@example.com",', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


async def test_wrong_password_and_unknown_email_get_the_same_401(client, user_factory):
    user = await user_factory()
    wrong = await client.post(LOGIN, json={"email": user.email, "password": "wrong password!"})
    unknown = await client.post(
        LOGIN, json={"email": "nobody@example.com", "password": "whatever12"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "Incorrect e-mail or password"}


async def test_login_rehashes_outdated_password_hash(client, user_factory, db_session):
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    user = await user_factory()
    weak_hasher = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8192, parallelism=1),))
    old_hash = weak_hasher.hash(user.password)
    await db_session.execute(
        text("UPDATE users SET password_hash = :h WHERE id = :id"), {"h": old_hash, "id": user.id}
    )
    await db_session.commit()

    response = await client.post(LOGIN, json={"email": user.email, "password": user.password})
    assert response.status_code == 200
    new_hash = await db_session.scalar(select(User.password_hash).where(User.id == user.id))
    assert new_hash != old_hash
    assert verify_password(user.password, new_hash) == (True, None)


async def test_disabled_account_cannot_log_in(client, user_factory, db_session):
    user = await user_factory()
    await db_session.execute(
        text("UPDATE users SET is_active = false WHERE id = :id"), {"id": user.id}
    )
    await db_session.commit()
    response = await client.post(LOGIN, json={"email": user.email, "password": user.password})
    assert response.status_code == 401
    assert (await client.get(ME, headers=user.headers)).status_code == 401


async def test_me_without_token_is_401_with_www_authenticate(client):
    response = await client.get(ME)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_expired_access_token_is_401(client, user_factory, settings):
    user = await user_factory()
    token, _ = create_access_token(user.id, settings, lifetime=timedelta(seconds=-5))
    response = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["detail"] == "Token has expired"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_forged_tokens_are_401(client, user_factory):
    user = await user_factory()
    claims = jwt.decode(user.access_token, options={"verify_signature": False})
    forged = [
        jwt.encode(claims, "some-other-key-that-is-long-enough-000000", algorithm="HS256"),
        jwt.encode(claims, key=None, algorithm="none"),
        user.access_token[:-4] + ("AAAA" if not user.access_token.endswith("AAAA") else "BBBB"),
        "not-a-jwt",
    ]
    for token in forged:
        response = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
        assert response.headers["www-authenticate"] == "Bearer"


async def test_token_for_deleted_user_is_401(client, user_factory, db_session):
    user = await user_factory()
    await db_session.execute(text("DELETE FROM users WHERE id = :id"), {"id": user.id})
    await db_session.commit()
    assert (await client.get(ME, headers=user.headers)).status_code == 401


async def test_refresh_token_is_not_an_access_token(client, user_factory):
    user = await user_factory()
    response = await client.get(ME, headers={"Authorization": f"Bearer {user.refresh_token}"})
    assert response.status_code == 401
    assert response.json()["detail"] == "Not an access token"
    # ...and the other way round.
    response = await client.post(REFRESH, json={"refresh_token": user.access_token})
    assert response.status_code == 401


async def test_refresh_rotates_tokens(client, user_factory, db_session):
    user = await user_factory()
    response = await client.post(REFRESH, json={"refresh_token": user.refresh_token})
    assert response.status_code == 200
    tokens = response.json()
    assert tokens["refresh_token"] != user.refresh_token
    me = await client.get(ME, headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200
    # Only digests are stored, never the tokens themselves.
    stored = (await db_session.scalars(select(RefreshToken.token_hash))).all()
    assert len(stored) == 2
    assert user.refresh_token not in stored and tokens["refresh_token"] not in stored


async def test_reusing_a_rotated_refresh_token_revokes_every_session(client, user_factory):
    user = await user_factory()
    other_device = (
        await client.post(LOGIN, json={"email": user.email, "password": user.password})
    ).json()
    rotated = (await client.post(REFRESH, json={"refresh_token": user.refresh_token})).json()

    reuse = await client.post(REFRESH, json={"refresh_token": user.refresh_token})
    assert reuse.status_code == 401
    assert "already used" in reuse.json()["detail"]
    # The thief's and the owner's current tokens are now dead too.
    for token in (rotated["refresh_token"], other_device["refresh_token"]):
        response = await client.post(REFRESH, json={"refresh_token": token})
        assert response.status_code == 401


async def test_concurrent_refreshes_with_one_token_succeed_once(client, user_factory):
    import asyncio

    user = await user_factory()
    responses = await asyncio.gather(
        *(client.post(REFRESH, json={"refresh_token": user.refresh_token}) for _ in range(4))
    )
    assert sorted(r.status_code for r in responses) == [200, 401, 401, 401]


async def test_refresh_with_garbage_or_expired_token_is_401(
    client, user_factory, settings, db_session
):
    user = await user_factory()
    assert (await client.post(REFRESH, json={"refresh_token": "garbage"})).status_code == 401
    await db_session.execute(text("UPDATE refresh_tokens SET expires_at = now() - interval '1 s'"))
    await db_session.commit()
    assert (
        await client.post(REFRESH, json={"refresh_token": user.refresh_token})
    ).status_code == 401


async def test_refresh_token_of_unknown_row_is_401(client, user_factory, settings):
    from app.core.security import create_refresh_token

    user = await user_factory()
    token, _ = create_refresh_token(user.id, uuid.uuid4(), settings)
    response = await client.post(REFRESH, json={"refresh_token": token})
    assert response.status_code == 401


async def test_logout_revokes_the_refresh_token(client, user_factory):
    user = await user_factory()
    response = await client.post(LOGOUT, json={"refresh_token": user.refresh_token})
    assert response.status_code == 204
    response = await client.post(REFRESH, json={"refresh_token": user.refresh_token})
    assert response.status_code == 401


async def test_logout_twice_is_harmless_and_keeps_other_sessions(client, user_factory):
    user = await user_factory()
    other = (await client.post(LOGIN, json={"email": user.email, "password": user.password})).json()
    for _ in range(2):
        response = await client.post(LOGOUT, json={"refresh_token": user.refresh_token})
        assert response.status_code == 204
    response = await client.post(REFRESH, json={"refresh_token": other["refresh_token"]})
    assert response.status_code == 200


async def test_logout_with_a_forged_token_is_401(client):
    response = await client.post(LOGOUT, json={"refresh_token": "forged"})
    assert response.status_code == 401


async def test_registration_can_be_closed(app, client, settings):
    app.state.settings = settings.model_copy(update={"registration_open": False})
    response = await client.post(
        REGISTER, json={"email": "d@example.com", "password": TEST_PASSWORD}
    )
    assert response.status_code == 403


def test_hash_and_verify_roundtrip():
    password_hash = hash_password("a long enough password")
    assert verify_password("a long enough password", password_hash) == (True, None)
    assert verify_password("another password", password_hash)[0] is False
    assert verify_password("anything", "not-a-hash") == (False, None)


async def test_admin_only_routes_refuse_other_users(app, client, user_factory):
    @app.get("/api/admin-probe")
    async def admin_probe(admin: CurrentAdmin) -> dict[str, str]:
        return {"admin": admin.email}

    user, admin = await user_factory(), await user_factory(is_admin=True)
    assert (await client.get("/api/admin-probe", headers=user.headers)).status_code == 403
    response = await client.get("/api/admin-probe", headers=admin.headers)
    assert response.status_code == 200
    assert response.json() == {"admin": admin.email}
    assert (await client.get("/api/admin-probe")).status_code == 401

"""REGISTRATION_MODE: open (the default), invite-only (admins invite) and closed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
from typer.testing import CliRunner

from app.cli import cli
from app.services.invitations import create_invitation

REGISTER = "/api/auth/register"
INVITATIONS = "/api/invitations"
PASSWORD = "correct horse battery staple"


def with_mode(app, settings, mode: str) -> None:
    app.state.settings = settings.model_copy(update={"registration_mode": mode})


async def register(client, email: str, invitation: str | None = None):
    body = {"email": email, "password": PASSWORD}
    if invitation is not None:
        body["invitation"] = invitation
    return await client.post(REGISTER, json=body)


async def test_open_registration_starts_on_free(client):
    response = await register(client, "new@example.com")
    assert response.status_code == 202, response.text
    login = await client.post(
        "/api/auth/login", json={"email": "new@example.com", "password": PASSWORD}
    )
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    account = (await client.get("/api/account", headers=headers)).json()
    assert account["subscription"]["plan"] == "free"


async def test_closed_registration_is_403(app, client, settings):
    with_mode(app, settings, "closed")
    response = await register(client, "new@example.com")
    assert response.status_code == 403
    assert "closed" in response.json()["detail"]
    # Even with an invitation: closed means closed.
    response = await register(
        client, "new@example.com", create_invitation(settings, "new@example.com").token
    )
    assert response.status_code == 403


async def test_invite_only_needs_a_valid_invitation_for_that_address(
    app, client, settings, user_factory
):
    admin = await user_factory(is_admin=True)
    with_mode(app, settings, "invite-only")

    response = await register(client, "ann@example.com")
    assert response.status_code == 403
    assert "invitation" in response.json()["detail"]

    response = await client.post(
        INVITATIONS, json={"email": "Ann@Example.com"}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    invitation = response.json()
    assert invitation["email"] == "ann@example.com"
    assert invitation["register_url"].startswith(f"{settings.public_url}/register?invitation=")
    expires = datetime.fromisoformat(invitation["expires_at"])
    assert timedelta(days=6) < expires - datetime.now(UTC) <= timedelta(days=7)

    response = await register(client, "bob@example.com", invitation["token"])
    assert response.status_code == 403
    assert "another e-mail address" in response.json()["detail"]
    response = await register(client, "ann@example.com", invitation["token"] + "x")
    assert response.status_code == 403

    expired = jwt.encode(
        {"type": "invite", "email": "ann@example.com", "exp": datetime.now(UTC) - timedelta(1)},
        settings.secret_key.get_secret_value(),
        algorithm="HS256",
    )
    response = await register(client, "ann@example.com", expired)
    assert response.status_code == 403 and "expired" in response.json()["detail"]
    # An access token is not an invitation.
    response = await register(client, "ann@example.com", admin.access_token)
    assert response.status_code == 403

    response = await register(client, "ann@example.com", invitation["token"])
    assert response.status_code == 202, response.text
    login = await client.post(
        "/api/auth/login", json={"email": "ann@example.com", "password": PASSWORD}
    )
    assert login.status_code == 200
    # Used again: the address has its account, and registration changes nothing.
    response = await register(client, "ann@example.com", invitation["token"])
    assert response.status_code == 202


async def test_only_admins_invite(client, user_factory):
    user = await user_factory()
    response = await client.post(INVITATIONS, json={"email": "x@example.com"}, headers=user.headers)
    assert response.status_code == 403
    assert (await client.post(INVITATIONS, json={"email": "x@example.com"})).status_code == 401


def test_the_older_registration_open_false_still_closes(settings):
    assert settings.effective_registration_mode == "open"
    closed = settings.model_copy(update={"registration_open": False})
    assert closed.effective_registration_mode == "closed"
    explicit = settings.model_copy(
        update={"registration_open": False, "registration_mode": "invite-only"}
    )
    assert explicit.effective_registration_mode == "invite-only"


def test_invite_command_prints_a_token_for_the_address(settings):
    result = CliRunner().invoke(cli, ["invite", "Cy@Example.com"])
    assert result.exit_code == 0, result.output
    token = result.output.split("token: ")[1].split()[0]
    claims = jwt.decode(token, settings.secret_key.get_secret_value(), algorithms=["HS256"])
    assert claims["email"] == "cy@example.com" and claims["type"] == "invite"
    assert f"{settings.public_url}/register?invitation=" in result.output
    result = CliRunner().invoke(cli, ["invite", "not-an-address"])
    assert result.exit_code == 2

"""Login lock-out per address, password change, and password reset by e-mail (through a
real SMTP server on loopback: aiosmtpd)."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Iterator
from email import message_from_string, policy

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, text

from app.core.config import Settings
from app.core.db import get_engine
from app.core.security import token_digest
from app.main import create_app
from app.models.user import PasswordResetToken
from app.services.accounts import email_digest
from tests.app.utils.users import TEST_PASSWORD

LOGIN = "/api/auth/login"
ME = "/api/auth/me"
REFRESH = "/api/auth/refresh"
PASSWORD = "/api/auth/password"
RESET = "/api/auth/password-reset"
CONFIRM = "/api/auth/password-reset/confirm"
NEW_PASSWORD = "a brand new passphrase"


async def _login(client, email: str, password: str) -> httpx.Response:
    return await client.post(LOGIN, json={"email": email, "password": password})


# --- lock-out ----------------------------------------------------------------------------
async def test_an_address_is_locked_after_repeated_failures(client, user_factory, settings):
    user = await user_factory()
    for _ in range(settings.login_max_failures):
        assert (await _login(client, user.email, "wrong password")).status_code == 401
    response = await _login(client, user.email, TEST_PASSWORD)  # even the right one
    assert response.status_code == 429
    assert 0 < int(response.headers["Retry-After"]) <= settings.login_lockout_seconds
    assert "Too many failed logins" in response.json()["detail"]


async def test_the_lock_holds_across_app_processes(client, user_factory, settings):
    """Counted in the database: another app instance (another worker) sees it."""
    user = await user_factory()
    for _ in range(settings.login_max_failures):
        await _login(client, user.email, "wrong password")
    other_app = create_app(settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=other_app), base_url="http://other"
    ) as other:
        assert (await _login(other, user.email, TEST_PASSWORD)).status_code == 429


async def test_unknown_addresses_lock_the_same_way(client, settings):
    """A lock-out says nothing about whether the account exists."""
    for _ in range(settings.login_max_failures):
        assert (await _login(client, "nobody@example.com", "guess 1234")).status_code == 401
    assert (await _login(client, "nobody@example.com", "guess 1234")).status_code == 429


async def test_each_failure_past_the_limit_doubles_the_wait(client, user_factory, settings):
    user = await user_factory()
    limit = settings.login_max_failures
    for _ in range(limit):
        await _login(client, user.email, "wrong password")
    first = int((await _login(client, user.email, "x")).headers["Retry-After"])
    await _lift_lock(settings, user.email)
    await _login(client, user.email, "wrong password")  # failure number limit + 1
    second = int((await _login(client, user.email, "x")).headers["Retry-After"])
    assert first <= settings.login_lockout_seconds < second <= 2 * settings.login_lockout_seconds


async def test_a_successful_login_clears_the_count(client, user_factory, settings):
    user = await user_factory()
    for _ in range(settings.login_max_failures - 1):
        await _login(client, user.email, "wrong password")
    assert (await _login(client, user.email, TEST_PASSWORD)).status_code == 200
    for _ in range(settings.login_max_failures - 1):
        assert (await _login(client, user.email, "wrong password")).status_code == 401


async def _lift_lock(settings: Settings, email: str) -> None:
    """End the current lock of ``email`` as if its time had passed, keeping the count."""
    async with get_engine(settings).begin() as connection:
        await connection.execute(
            text("UPDATE login_throttles SET locked_until = now() WHERE email_digest = :d"),
            {"d": email_digest(email)},
        )


# --- password change ---------------------------------------------------------------------
async def test_password_change_ends_every_other_session(client, user_factory):
    user = await user_factory()
    other_session = (await _login(client, user.email, TEST_PASSWORD)).json()

    response = await client.post(
        PASSWORD,
        json={"current_password": TEST_PASSWORD, "new_password": NEW_PASSWORD},
        headers=user.headers,
    )
    assert response.status_code == 200, response.text
    fresh = response.json()

    # The other device's refresh token and this session's old tokens stop working ...
    assert (
        await client.post(REFRESH, json={"refresh_token": other_session["refresh_token"]})
    ).status_code == 401
    stale = {"Authorization": f"Bearer {other_session['access_token']}"}
    assert (await client.get(ME, headers=stale)).status_code == 401
    # ... the new pair works, and so does the new password; the old one does not.
    assert (
        await client.get(ME, headers={"Authorization": f"Bearer {fresh['access_token']}"})
    ).status_code == 200
    assert (await _login(client, user.email, NEW_PASSWORD)).status_code == 200
    assert (await _login(client, user.email, TEST_PASSWORD)).status_code == 401


async def test_password_change_needs_the_current_password(client, user_factory):
    user = await user_factory()
    response = await client.post(
        PASSWORD,
        json={"current_password": "not my password", "new_password": NEW_PASSWORD},
        headers=user.headers,
    )
    assert response.status_code == 403
    assert (await _login(client, user.email, TEST_PASSWORD)).status_code == 200


# --- password reset by e-mail ------------------------------------------------------------
class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, envelope.content.decode()))
        return "250 OK"


@pytest.fixture
def smtp_inbox() -> Iterator[tuple[_Inbox, int]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
async def mail_client(settings, smtp_inbox) -> AsyncIterator[httpx.AsyncClient]:
    _inbox, port = smtp_inbox
    mail_settings = settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none"}
    )
    app = create_app(mail_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


async def _wait_for_mail(inbox: _Inbox, count: int) -> None:
    for _ in range(100):
        if len(inbox.messages) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} mail(s), got {len(inbox.messages)}")


async def _reset_token(mail_client, inbox: _Inbox, email: str) -> str:
    response = await mail_client.post(RESET, json={"email": email})
    assert response.status_code == 202, response.text
    await _wait_for_mail(inbox, 1)
    recipients, content = inbox.messages[-1]
    assert recipients == [email]
    body = message_from_string(content, policy=policy.default).get_content()
    return re.search(r"reset-password\?token=(\S+)", body).group(1)


async def test_password_reset_by_mailed_link(mail_client, smtp_inbox, user_factory, db_session):
    inbox, _port = smtp_inbox
    user = await user_factory()
    token = await _reset_token(mail_client, inbox, user.email)
    # Stored only as its digest.
    stored = (await db_session.scalars(select(PasswordResetToken.token_hash))).all()
    assert stored == [token_digest(token)]

    response = await mail_client.post(CONFIRM, json={"token": token, "new_password": NEW_PASSWORD})
    assert response.status_code == 204, response.text
    assert (await _login(mail_client, user.email, NEW_PASSWORD)).status_code == 200
    # Every session from before has ended.
    refreshed = await mail_client.post(REFRESH, json={"refresh_token": user.refresh_token})
    assert refreshed.status_code == 401
    # The link works once.
    again = await mail_client.post(CONFIRM, json={"token": token, "new_password": "yet another pw"})
    assert again.status_code == 404


async def test_reset_link_expires(mail_client, smtp_inbox, user_factory, db_session):
    inbox, _port = smtp_inbox
    user = await user_factory()
    token = await _reset_token(mail_client, inbox, user.email)
    await db_session.execute(
        text("UPDATE password_reset_tokens SET expires_at = now() - interval '1 second'")
    )
    await db_session.commit()
    response = await mail_client.post(CONFIRM, json={"token": token, "new_password": NEW_PASSWORD})
    assert response.status_code == 404
    assert (await _login(mail_client, user.email, TEST_PASSWORD)).status_code == 200


async def test_reset_for_an_unknown_address_answers_the_same_and_mails_nobody(
    mail_client, smtp_inbox, user_factory
):
    inbox, _port = smtp_inbox
    user = await user_factory()
    known = await mail_client.post(RESET, json={"email": user.email})
    unknown = await mail_client.post(RESET, json={"email": "nobody@example.com"})
    assert (known.status_code, known.json()) == (unknown.status_code, unknown.json())
    await _wait_for_mail(inbox, 1)
    await asyncio.sleep(0.3)
    assert [recipients for recipients, _ in inbox.messages] == [[user.email]]


async def test_reset_without_a_mail_server_is_503(client, user_factory):
    user = await user_factory()
    response = await client.post(RESET, json={"email": user.email})
    assert response.status_code == 503

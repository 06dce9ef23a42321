"""The ``knowledgetree`` command: create-admin, migrate, serve."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import cli
from app.models.user import User
from tests.app.utils.users import TEST_PASSWORD

KNOWLEDGETREE = Path(sys.executable).parent / "knowledgetree"
runner = CliRunner()


def create_admin(*args: str, input: str | None = None):
    return runner.invoke(cli, ["create-admin", *args], input=input)


async def create_admin_async(*args: str, input: str | None = None):
    """The command runs its own event loop (asyncio.run), so it needs a thread of its own
    when called from an async test."""
    return await asyncio.to_thread(create_admin, *args, input=input)


async def test_create_admin_with_password_from_stdin(client, db_session):
    result = await create_admin_async(
        "Root@Example.com", "--password-stdin", input=TEST_PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    assert "Created admin root@example.com" in result.output

    user = await db_session.scalar(select(User).where(User.email == "root@example.com"))
    assert user.is_admin and user.is_active
    login = await client.post(
        "/api/auth/login", json={"email": "root@example.com", "password": TEST_PASSWORD}
    )
    assert login.status_code == 200
    me = await client.get(
        "/api/auth/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
    )
    assert me.json()["is_admin"] is True


async def test_create_admin_prompts_for_the_password_twice(client, monkeypatch):
    # A person at a terminal (the test runner's stdin is a pipe).
    monkeypatch.setattr("app.cli._stdin_is_a_terminal", lambda: True)
    result = await create_admin_async(
        "boss@example.com", input=f"{TEST_PASSWORD}\n{TEST_PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    login = await client.post(
        "/api/auth/login", json={"email": "boss@example.com", "password": TEST_PASSWORD}
    )
    assert login.status_code == 200


async def test_create_admin_promotes_an_existing_user_keeping_the_password(
    client, user_factory, db_session
):
    user = await user_factory(password="the user's own password")
    result = await create_admin_async(user.email, "--password-stdin", input="")
    assert result.exit_code == 0, result.output
    assert f"{user.email} is now an admin" in result.output
    me = await client.get("/api/auth/me", headers=user.headers)
    assert me.json()["is_admin"] is True
    login = await client.post(
        "/api/auth/login", json={"email": user.email, "password": "the user's own password"}
    )
    assert login.status_code == 200


async def test_create_admin_refuses_to_prompt_without_a_terminal(client, db_session):
    """`ssh host sudo knowledgetree create-admin` has no terminal: the password would echo."""
    result = await create_admin_async("noterm@example.com", input=f"{TEST_PASSWORD}\n")
    assert result.exit_code == 2, result.output
    assert "ssh -t" in result.output and "--password-stdin" in result.output
    assert TEST_PASSWORD not in result.output
    created = await db_session.scalar(select(User).where(User.email == "noterm@example.com"))
    assert created is None


def test_create_admin_rejects_a_weak_password():
    result = create_admin("weak@example.com", "--password-stdin", input="short\n")
    assert result.exit_code == 2
    assert "Password rejected" in result.output
    assert "at least 10 characters" in result.output


def test_create_admin_rejects_an_invalid_email():
    result = create_admin("not-an-address", "--password-stdin", input=TEST_PASSWORD + "\n")
    assert result.exit_code == 2
    assert "not a valid e-mail address" in result.output


def test_migrate_from_the_installed_command(settings):
    """The console script finds the packaged Alembic scripts (no alembic.ini needed)."""
    result = subprocess.run(
        [str(KNOWLEDGETREE), "migrate"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",  # nothing from the source tree's working directory is needed
        env=os.environ.copy(),
    )
    assert result.returncode == 0, result.stderr
    assert "Database is at revision" in result.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.timeout(180)
def test_serve_answers_health_and_readiness(settings):
    port = _free_port()
    server = subprocess.Popen(
        [str(KNOWLEDGETREE), "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd="/",
    )
    try:
        deadline = time.monotonic() + 150  # start-up loads the embedding model
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert health.json() == {"status": "ok"}
        # Alive first, ready once the query encoder (or, without it, torch) is loaded.
        while (ready := httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)).is_error:
            assert ready.status_code == 503, ready.text
            assert server.poll() is None, server.stdout.read()
            assert time.monotonic() < deadline, f"server never ready: {ready.text}"
            time.sleep(0.2)
        docs = httpx.get(f"http://127.0.0.1:{port}/docs", timeout=5)
        assert docs.status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_check_config_prints_settings_with_secrets_masked(settings):
    result = runner.invoke(cli, ["check-config"])
    assert result.exit_code == 0, result.output
    assert "SECRET_KEY=********" in result.output
    assert settings.secret_key.get_secret_value() not in result.output
    assert "ENVIRONMENT=test" in result.output
    assert "MAX_UPLOAD_MB=25" in result.output


def test_check_config_validates_an_env_file(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL")  # the environment would win over the file
    env_file = tmp_path / "candidate.env"
    env_file.write_text("MAX_UPLOAD_MB=0\n")
    result = runner.invoke(cli, ["check-config", "--env-file", str(env_file)])
    assert result.exit_code == 2
    assert "MAX_UPLOAD_MB Input should be greater than or equal to 1" in result.output

    env_file.write_text("MAX_UPLOAD_MB=5\nDATABASE_URL=postgresql://kt:hunter2@db/kt\n")
    result = runner.invoke(cli, ["check-config", "--env-file", str(env_file)])
    assert result.exit_code == 0, result.output
    assert "MAX_UPLOAD_MB=5" in result.output
    assert "hunter2" not in result.output
    assert "DATABASE_URL=postgresql+asyncpg://kt:***@db/kt" in result.output

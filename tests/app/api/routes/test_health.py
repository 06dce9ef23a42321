"""Liveness and readiness endpoints."""

from __future__ import annotations

import uuid

import pytest

from app.core.readiness import UNEXPECTED_FAILURE, NotReady
from app.main import create_app


@pytest.mark.parametrize("path", ["/healthz", "/api/healthz"])
async def test_healthz(client, path):
    response = await client.get(path)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/readyz", "/api/readyz"])
async def test_readyz_when_everything_is_fine(client, path):
    response = await client.get(path)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["migrations"]["ok"] is True
    assert body["checks"]["migrations"]["detail"].startswith("at head ")


async def test_readyz_is_503_when_the_database_is_unreachable(settings):
    import httpx

    broken = settings.model_copy(
        update={"database_url": "postgresql+asyncpg://postgres@/nowhere?host=/nonexistent-dir"}
    )
    app = create_app(broken)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.get("/readyz")
        assert (await c.get("/healthz")).status_code == 200  # alive, just not ready
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["checks"]["database"]["ok"] is False
    # A fixed sentence: the driver's error (socket path, host, user) stays in the log.
    assert body["checks"]["database"]["detail"] == UNEXPECTED_FAILURE
    assert "nonexistent-dir" not in response.text
    assert body["checks"]["migrations"]["ok"] is False


async def test_readyz_is_503_when_migrations_are_missing(settings, postgres_server):
    import httpx

    postgres_server.psql(
        'DROP DATABASE IF EXISTS "kt_test_unmigrated"; CREATE DATABASE "kt_test_unmigrated";'
    )
    url = postgres_server.get_uri("kt_test_unmigrated")
    app = create_app(
        settings.model_copy(
            update={"database_url": url.replace("postgresql://", "postgresql+asyncpg://")}
        )
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.get("/readyz")
    from app.core.db import get_engine

    await get_engine(app.state.settings).dispose()
    postgres_server.psql('DROP DATABASE "kt_test_unmigrated" WITH (FORCE);')
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["ok"] is True
    assert checks["migrations"]["ok"] is False
    assert checks["migrations"]["detail"].startswith(
        "database at revision none (run `knowledgetree migrate`), code expects "
    )


async def test_a_failing_custom_check_makes_readyz_503(app, client):
    async def model_loaded(app) -> str:
        raise NotReady("embedding model not loaded yet")

    app.state.readiness_checks["embedding_model"] = model_loaded
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["embedding_model"] == {
        "ok": False,
        "detail": "embedding model not loaded yet",
    }


@pytest.mark.parametrize("path", ["/readyz", "/api/readyz"])
async def test_readyz_never_shows_exception_text(app, client, path, caplog):
    async def leaky(app) -> str:
        raise ConnectionError("password authentication failed for user kt at 10.0.0.5")

    app.state.readiness_checks["database"] = leaky
    response = await client.get(path)
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == {"ok": False, "detail": UNEXPECTED_FAILURE}
    assert "10.0.0.5" not in response.text and "password" not in response.text
    assert "10.0.0.5" in caplog.text  # the details are in the log


async def test_metrics_count_requests_by_route_template(client, user_factory):
    user = await user_factory()
    for _ in range(2):
        await client.get(f"/api/projects/{uuid.uuid4()}", headers=user.headers)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'route="/api/projects/{project_id}",status="404"' in text
    assert "knowledgetree_http_request_duration_seconds_bucket" in text
    assert str(uuid.uuid4())[:8] not in text  # raw ids never become labels
    # Not reachable through the public /api prefix.
    assert (await client.get("/api/metrics")).status_code == 404


async def test_unexpected_errors_answer_json_500(settings):
    import httpx

    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internal detail")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        response = await c.get("/boom")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error; it has been logged"}
    assert "secret internal detail" not in response.text


async def test_openapi_schema_documents_the_api(client):
    response = await client.get("/api/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    for path in (
        "/api/auth/login",
        "/api/auth/refresh",
        "/api/projects/{project_id}",
        "/api/readyz",
    ):
        assert path in schema["paths"], path
    assert "/metrics" not in schema["paths"]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert (await client.get("/docs")).status_code == 200


@pytest.mark.parametrize("path", ["/version", "/api/version"])
async def test_version_names_the_release_and_its_commit(settings, path):
    import httpx

    app = create_app(settings.model_copy(update={"release": "0.3.0-g1234abcdef-dirty-99aa"}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.get(path)
    assert response.status_code == 200
    assert response.json() == {"version": "0.3.0-g1234abcdef-dirty-99aa", "commit": "1234abcdef"}


async def test_readyz_accepts_a_database_a_newer_release_migrated(settings, postgres_server):
    """Blue-green: the new colour migrates (expand only) while the old one still serves,
    and a rollback starts the old release on the newer schema."""
    import httpx

    from app.core import migrations

    name = f"kt_test_newer_{uuid.uuid4().hex[:8]}"
    postgres_server.psql(f'CREATE DATABASE "{name}";')
    url = postgres_server.get_uri(name).replace("postgresql://", "postgresql+asyncpg://")
    newer = settings.model_copy(update={"database_url": url})
    migrations.upgrade(newer)
    postgres_server.psql(
        f"\\c \"{name}\"\nUPDATE alembic_version SET version_num = '9999_from_a_newer_release';"
    )
    app = create_app(newer)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            response = await c.get("/readyz")
    finally:
        from app.core.db import get_engine

        await get_engine(app.state.settings).dispose()
        postgres_server.psql(f'DROP DATABASE "{name}" WITH (FORCE);')
    check = response.json()["checks"]["migrations"]
    assert check["ok"] is True
    assert check["detail"].startswith("at 9999_from_a_newer_release, newer than")

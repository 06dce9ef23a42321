"""Error reports reach Sentry (a local stand-in speaking the envelope protocol)."""

from __future__ import annotations

import httpx
import pytest
import sentry_sdk

from app.main import app_version, create_app
from tests.fakes.sentry_server import SentryStandIn


@pytest.fixture
def sentry():
    with SentryStandIn() as stand_in:
        yield stand_in
    # Leave no global Sentry client behind for the other tests.
    sentry_sdk.init(dsn=None)


async def test_unhandled_errors_are_reported_without_personal_data(settings, sentry, user_factory):
    app = create_app(settings.model_copy(update={"sentry_dsn": sentry.dsn}))

    @app.get("/api/boom")
    async def boom() -> None:
        raise RuntimeError("reported to sentry")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get(
            "/api/boom", headers={"Authorization": "Bearer some-token", "Cookie": "a=b"}
        )
    assert response.status_code == 500
    sentry_sdk.flush(timeout=5)

    events = sentry.events()
    assert len(events) == 1
    event = events[0]
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert event["exception"]["values"][-1]["value"] == "reported to sentry"
    assert event["environment"] == "test"
    assert event["release"] == f"knowledgetree@{app_version()}"
    request = event.get("request", {})
    assert "Authorization" not in request.get("headers", {})
    assert "cookies" not in request or not request["cookies"]
    assert "ip_address" not in event.get("user", {})
    frames = event["exception"]["values"][-1]["stacktrace"]["frames"]
    assert frames and all("vars" not in frame for frame in frames)  # no local variables


async def test_no_dsn_means_no_reports(settings, sentry):
    app = create_app(settings)  # SENTRY_DSN unset

    @app.get("/api/boom")
    async def boom() -> None:
        raise RuntimeError("not reported")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/api/boom")).status_code == 500
    sentry_sdk.flush(timeout=2)
    assert sentry.events() == []

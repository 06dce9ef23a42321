"""Error reports reach Sentry (a local stand-in speaking the envelope protocol), with the
release and environment set and no personal data anywhere in what was sent."""

from __future__ import annotations

import asyncio
import sys

import httpx
import pytest
import sentry_sdk
from sqlalchemy import text

from app.api.deps import SessionDep
from app.core.sentry import app_release, init_sentry
from app.main import create_app
from app.services import chat as chat_service
from app.services.ingestion import pipeline
from tests.fakes.anthropic_server import FakeAnthropicServer, Script
from tests.fakes.sentry_server import SentryStandIn

# Things a person typed or a secret: none may appear in any envelope.
SECRET_EMAIL = "private.person@example.org"
SECRET_PASSWORD = "correct-horse-battery-staple-42"
SECRET_MESSAGE = "my confidential salary question"
SECRET_QUERY = "secret-search-words"
SECRET_TOKEN = "refresh-token-abcdef123456"
PERSONAL = (SECRET_EMAIL, SECRET_PASSWORD, SECRET_MESSAGE, SECRET_QUERY, SECRET_TOKEN)


@pytest.fixture
def sentry():
    with SentryStandIn() as stand_in:
        yield stand_in
    # Leave no global Sentry client behind for the other tests.
    sentry_sdk.init(dsn=None)


def assert_no_personal_data(sentry: SentryStandIn) -> None:
    for envelope in sentry.envelopes:
        for item in envelope.items:
            body = item.payload.decode("utf-8", "replace")
            for secret in PERSONAL:
                assert secret not in body, f"{secret!r} was sent to Sentry in a {item.type}"


def assert_release_and_environment(event: dict, settings) -> None:
    assert event["environment"] == "test"
    assert event["release"] == f"knowledgetree@{app_release(settings)}"


async def test_request_errors_are_reported_without_personal_data(settings, sentry):
    app = create_app(
        settings.model_copy(update={"sentry_dsn": sentry.dsn, "sentry_traces_sample_rate": 1.0})
    )

    @app.post("/api/boom")
    async def boom(body: dict) -> None:
        raise RuntimeError("reported to sentry")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post(
            f"/api/boom?q={SECRET_QUERY}&page=2",
            json={
                "email": SECRET_EMAIL,
                "password": SECRET_PASSWORD,
                "refresh_token": SECRET_TOKEN,
                "nested": [{"message": SECRET_MESSAGE}],
            },
            headers={"Authorization": f"Bearer {SECRET_TOKEN}", "Cookie": f"s={SECRET_TOKEN}"},
        )
    assert response.status_code == 500
    sentry_sdk.flush(timeout=5)

    events = sentry.events()
    assert len(events) == 1
    event = events[0]
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert event["exception"]["values"][-1]["value"] == "reported to sentry"
    assert_release_and_environment(event, settings)
    request = event.get("request", {})
    assert not request.get("data")  # request bodies are never attached
    assert "page=2" in request["query_string"]  # the harmless part stays useful
    assert "ip_address" not in event.get("user", {})
    frames = event["exception"]["values"][-1]["stacktrace"]["frames"]
    assert frames and all("vars" not in frame for frame in frames)  # no local variables
    assert sentry.items("transaction"), "traces are sampled at SENTRY_TRACES_SAMPLE_RATE"
    assert_no_personal_data(sentry)


async def test_health_probes_are_never_traced(settings, sentry):
    app = create_app(
        settings.model_copy(update={"sentry_dsn": sentry.dsn, "sentry_traces_sample_rate": 1.0})
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for path in ("/healthz", "/api/healthz", "/metrics"):
            await client.get(path)
        await client.get("/api/version")
    sentry_sdk.flush(timeout=5)

    names = [item.json()["transaction"] for item in sentry.items("transaction")]
    assert names == ["/api/version"], "only the real request is traced, at rate 1.0"


async def test_sql_errors_carry_no_parameters(settings, sentry):
    app = create_app(settings.model_copy(update={"sentry_dsn": sentry.dsn}))

    @app.get("/api/sql-boom")
    async def sql_boom(session: SessionDep) -> None:
        await session.execute(text("SELECT CAST(:value AS integer)"), {"value": SECRET_EMAIL})

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/api/sql-boom")).status_code == 500
    sentry_sdk.flush(timeout=5)

    (event,) = sentry.events()
    assert "parameters hidden" in event["exception"]["values"][-1]["value"]
    assert_no_personal_data(sentry)


async def test_errors_inside_a_chat_stream_are_reported(
    chat_settings, user_factory, anthropic_fake: FakeAnthropicServer, sentry, monkeypatch
):
    app = create_app(chat_settings.model_copy(update={"sentry_dsn": sentry.dsn}))
    anthropic_fake.default = Script(text="never sent")

    def broken_prompt(*_args, **_kwargs):
        raise RuntimeError("prompt assembly broke")

    monkeypatch.setattr(chat_service, "build_prompt", broken_prompt)
    user = await user_factory(email=SECRET_EMAIL, password=SECRET_PASSWORD)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        response = await client.post(
            "/api/chat/stream", json={"message": SECRET_MESSAGE}, headers=user.headers
        )
    assert response.status_code == 200  # the stream had started: the error is an event
    assert "event: error" in response.text and chat_service.INTERNAL_ERROR in response.text
    sentry_sdk.flush(timeout=5)

    events = sentry.events()
    assert len(events) == 1
    event = events[0]
    assert event["exception"]["values"][-1]["value"] == "prompt assembly broke"
    assert event["logentry"]["message"].startswith("chat turn failed")
    assert_release_and_environment(event, chat_settings)
    assert_no_personal_data(sentry)


async def test_errors_in_background_ingestion_are_reported(settings, sentry, monkeypatch):
    async def broken_parser(*_args, **_kwargs):
        raise RuntimeError("parser crashed")

    monkeypatch.setattr(pipeline, "parse_file_isolated", broken_parser)
    app = create_app(settings.model_copy(update={"sentry_dsn": sentry.dsn}))
    async with (
        app.router.lifespan_context(app),  # starts the background ingestion worker
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        credentials = {"email": SECRET_EMAIL, "password": SECRET_PASSWORD}
        assert (await client.post("/api/auth/register", json=credentials)).status_code == 202
        token = (await client.post("/api/auth/login", json=credentials)).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        project = (await client.post("/api/projects", json={"name": "P"}, headers=headers)).json()
        upload = await client.post(
            f"/api/projects/{project['id']}/documents",
            files={"files": ("notes.md", f"# Notes\n\n{SECRET_MESSAGE}\n", "text/markdown")},
            headers=headers,
        )
        assert upload.status_code in (201, 202), upload.text
        for _ in range(100):  # the worker runs in the background: wait for its verdict
            documents = await client.get(
                f"/api/projects/{project['id']}/documents", headers=headers
            )
            if documents.json()[0]["status"] == "failed":
                break
            await asyncio.sleep(0.1)
        assert documents.json()[0]["status"] == "failed"
    sentry_sdk.flush(timeout=5)

    (event,) = sentry.events()
    assert event["exception"]["values"][-1]["value"] == "parser crashed"
    assert event["logentry"]["message"].startswith("ingestion of document")
    assert_release_and_environment(event, settings)
    assert_no_personal_data(sentry)


async def test_no_dsn_means_no_reports(settings, sentry):
    app = create_app(settings)  # SENTRY_DSN unset

    @app.get("/api/boom")
    async def boom() -> None:
        raise RuntimeError("not reported")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/api/boom")).status_code == 500
    sentry_sdk.flush(timeout=2)
    assert sentry.envelopes == []


async def test_the_browser_reads_its_sentry_settings_from_client_config(settings, client):
    app = create_app(
        settings.model_copy(
            update={"sentry_frontend_dsn": "https://pub@o1.ingest.sentry.io/2", "release": "1.2.3"}
        )
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as browser:
        config = (await browser.get("/api/client-config")).json()
    assert config == {
        "environment": "test",
        "release": "1.2.3",
        "sentry_dsn": "https://pub@o1.ingest.sentry.io/2",
        "sentry_traces_sample_rate": settings.sentry_traces_sample_rate,
    }


def test_release_is_the_deployed_release_folder(settings, tmp_path, monkeypatch):
    """On a host the venv is <release>/venv and the app role keeps <release>/files/RELEASE."""
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "RELEASE").write_text("0.1.0-g1234567890\n")
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    assert app_release(settings) == "0.1.0-g1234567890"
    assert app_release(settings.model_copy(update={"release": "2.0.0"})) == "2.0.0"


def test_a_zero_trace_rate_turns_tracing_off(settings, sentry):
    """At any rate above 0 the SDK instruments every request; 0 means none of that."""
    init_sentry(
        settings.model_copy(update={"sentry_dsn": sentry.dsn, "sentry_traces_sample_rate": 0})
    )
    assert sentry_sdk.get_client().options["traces_sample_rate"] is None
    init_sentry(settings.model_copy(update={"sentry_dsn": sentry.dsn}))
    assert sentry_sdk.get_client().options["traces_sample_rate"] == 0.05


def test_only_the_integrations_the_app_needs_run(settings, sentry):
    """Each extra integration costs CPU on every request (bench/observability_overhead.py);
    the ones switched off are named in app/core/sentry.py with the reason."""
    init_sentry(settings.model_copy(update={"sentry_dsn": sentry.dsn}))
    client = sentry_sdk.get_client()
    enabled = set(client.integrations)
    assert {"starlette", "fastapi", "httpx", "logging"} <= enabled
    assert not enabled & {"sqlalchemy", "asyncpg", "anthropic", "huggingface_hub"}
    assert client.options["trace_propagation_targets"] == []  # no trace headers to Anthropic

"""Plan limits through the API: the 402 body and usage headers, every model call counted,
concurrent requests at the limit, projects/documents/storage/versions, the full disk,
and the whole journey Free -> Starter -> limit -> 402 -> downgrade -> cancel."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
from sqlalchemy import select

from app.main import create_app
from app.models.billing import UsageCounter
from app.services.usage import calendar_month
from tests.app.utils.clients import app_client
from tests.fakes.anthropic_server import Script

CHAT = "/api/chat"


async def ask(client, user, message: str = "Hello?", **extra) -> httpx.Response:
    return await client.post(CHAT, json={"message": message, **extra}, headers=user.headers)


async def messages_used(db_session, user) -> int:
    counters = (
        await db_session.scalars(
            select(UsageCounter)
            .where(UsageCounter.user_id == user.id)
            .execution_options(populate_existing=True)
        )
    ).all()
    return sum(counter.messages for counter in counters)


async def test_chat_answers_carry_the_usage_headers(
    billing_client, user_factory, anthropic_fake, db_session
):
    user = await user_factory()
    response = await ask(billing_client, user)
    assert response.status_code == 200, response.text
    assert response.headers["X-Usage-Limit"] == "100"
    assert response.headers["X-Usage-Remaining"] == "99"
    reset = datetime.fromisoformat(response.headers["X-Usage-Reset"])
    assert reset == calendar_month(datetime.now(UTC))[1]

    async with billing_client.stream(
        "POST", f"{CHAT}/stream", json={"message": "Again?"}, headers=user.headers
    ) as stream:
        assert stream.headers["X-Usage-Remaining"] == "98"
        assert "event: done" in "".join([line async for line in stream.aiter_lines()])
    counter = (await db_session.scalars(select(UsageCounter))).one()
    assert counter.messages == 2
    assert counter.input_tokens > 0 and counter.output_tokens > 0  # saved with the answers


async def test_a_cross_origin_browser_app_may_read_the_usage_headers(
    billing_settings, user_factory, anthropic_fake
):
    origin = "http://localhost:5173"
    app = create_app(billing_settings.model_copy(update={"cors_origins": [origin]}))
    user = await user_factory()
    async with app_client(app) as client:
        response = await client.post(
            CHAT, json={"message": "Hi"}, headers={**user.headers, "Origin": origin}
        )
    assert response.status_code == 200
    exposed = response.headers["access-control-expose-headers"]
    assert {"X-Usage-Limit", "X-Usage-Remaining", "X-Usage-Reset"} <= {
        name.strip() for name in exposed.split(",")
    }


async def test_over_the_limit_is_a_402_naming_the_limit_and_the_model_is_not_called(
    billing_client, user_factory, anthropic_fake, set_usage
):
    user = await user_factory()
    await set_usage(user.id, 100)
    response = await ask(billing_client, user)
    assert response.status_code == 402
    body = response.json()
    reset = calendar_month(datetime.now(UTC))[1]
    assert body["limit"] == "messages_per_month" and body["plan"] == "free"
    assert (body["limit_value"], body["usage"]) == (100, 100)
    assert datetime.fromisoformat(body["reset_at"]) == reset
    assert body["upgrade_url"] == "https://kt.example.com/pricing"
    assert "100 messages" in body["detail"] and reset.strftime("%Y-%m-%d") in body["detail"]
    assert response.headers["X-Usage-Remaining"] == "0"
    response = await billing_client.post(
        f"{CHAT}/stream", json={"message": "Streamed?"}, headers=user.headers
    )
    assert response.status_code == 402
    assert anthropic_fake.requests == []


async def test_fifty_concurrent_messages_with_one_left_exactly_one_succeeds(
    billing_client, user_factory, anthropic_fake, set_usage, db_session
):
    user = await user_factory()
    await set_usage(user.id, 99)
    responses = await asyncio.gather(
        *(ask(billing_client, user, f"question {n}") for n in range(50))
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [402] * 49
    assert len(anthropic_fake.requests) == 1
    assert await messages_used(db_session, user) == 100


async def test_a_model_call_that_gives_nothing_is_not_counted(
    billing_client, user_factory, anthropic_fake, db_session
):
    user = await user_factory()
    anthropic_fake.default = Script(failure="overloaded")
    response = await ask(billing_client, user)
    assert response.status_code == 200
    assert response.json()["message"]["status"] == "failed"
    assert await messages_used(db_session, user) == 0


async def test_a_model_outside_the_plan_is_402(billing_client, user_factory, anthropic_fake):
    user = await user_factory()
    response = await ask(billing_client, user, model="claude-opus-4-1")
    assert response.status_code == 402
    assert response.json()["limit"] == "model"
    assert anthropic_fake.requests == []


async def test_artifacts_written_by_the_model_count_and_versions_are_capped(
    billing_client, user_factory, anthropic_fake, set_usage, db_session
):
    user = await user_factory()
    anthropic_fake.default = Script(text="# FAQ\n\nQ: why?\nA: because.")
    response = await billing_client.post(
        "/api/artifacts", json={"request": "draft a FAQ"}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    url = f"/api/artifacts/{response.json()['id']}"
    assert await messages_used(db_session, user) == 1
    response = await billing_client.post(f"{url}/regenerate", headers=user.headers)
    assert response.status_code == 200
    assert await messages_used(db_session, user) == 2

    # Free keeps 10 versions per artifact: 2 so far, 8 edits more, then no more.
    for number in range(8):
        response = await billing_client.patch(
            url, json={"content": f"edit {number}"}, headers=user.headers
        )
        assert response.status_code == 200, response.text
    response = await billing_client.patch(
        url, json={"content": "one too many"}, headers=user.headers
    )
    assert response.status_code == 402
    assert response.json()["limit"] == "artifact_versions"
    assert (
        await billing_client.patch(url, json={"title": "Renamed"}, headers=user.headers)
    ).status_code == 200
    response = await billing_client.post(f"{url}/regenerate", headers=user.headers)
    assert response.status_code == 402
    assert len(anthropic_fake.requests) == 2

    await set_usage(user.id, 100)
    response = await billing_client.post(
        "/api/artifacts", json={"request": "another"}, headers=user.headers
    )
    assert response.status_code == 402
    assert response.json()["limit"] == "messages_per_month"
    assert len(anthropic_fake.requests) == 2


async def test_project_limit_and_upload_limits(billing_client, user_factory, billing_settings):
    user = await user_factory()
    ids = []
    for number in range(3):
        response = await billing_client.post(
            "/api/projects", json={"name": f"P{number}"}, headers=user.headers
        )
        assert response.status_code == 201
        ids.append(response.json()["id"])
    response = await billing_client.post("/api/projects", json={"name": "P4"}, headers=user.headers)
    assert response.status_code == 402
    assert response.json()["limit"] == "projects" and response.json()["usage"] == 3

    # Free takes files up to 10 MiB; a larger one is refused and nothing is stored.
    big = b"plain text line\n" * (11 * 1024 * 1024 // 16)
    response = await billing_client.post(
        f"/api/projects/{ids[0]}/documents",
        files=[("files", ("big.txt", big))],
        headers=user.headers,
    )
    assert response.status_code == 402, response.text
    assert response.json()["limit"] == "max_upload_mb"
    documents = await billing_client.get(f"/api/projects/{ids[0]}/documents", headers=user.headers)
    assert documents.json() == []
    incoming = billing_settings.uploads_dir / ".incoming"
    assert not incoming.exists() or list(incoming.iterdir()) == []


async def test_a_nearly_full_disk_refuses_uploads_with_507(user_factory, billing_settings):
    app = create_app(billing_settings.model_copy(update={"min_free_disk_mb": 10**12}))
    user = await user_factory()
    async with app_client(app) as client:
        project = (
            await client.post("/api/projects", json={"name": "Docs"}, headers=user.headers)
        ).json()
        response = await client.post(
            f"/api/projects/{project['id']}/documents",
            files=[("files", ("a.txt", b"hello"))],
            headers=user.headers,
        )
    assert response.status_code == 507
    assert "nearly full" in response.json()["detail"]


async def test_free_to_starter_to_the_limit_then_downgrade_and_cancel(
    billing_client, stripe_fake, deliver, user_factory, anthropic_fake, set_usage
):
    user = await user_factory()
    account = (await billing_client.get("/api/account", headers=user.headers)).json()
    assert account["subscription"]["plan"] == "free"

    # Free -> Starter through Stripe Checkout and the signed webhook.
    response = await billing_client.post(
        "/api/billing/checkout-session", json={"plan": "starter"}, headers=user.headers
    )
    subscription_id = stripe_fake.complete_checkout(response.json()["id"])["id"]
    for event in list(stripe_fake.events):
        assert (await deliver(event)).status_code == 200
    account = (await billing_client.get("/api/account", headers=user.headers)).json()
    assert account["subscription"]["plan"] == "starter"
    assert account["limits"]["messages_per_month"] == 2000
    assert account["usage"]["messages"] == {"used": 0, "limit": 2000, "percent": 0.0}

    # Starter allows 10 projects: make 5 (Free would stop at 3).
    for number in range(5):
        response = await billing_client.post(
            "/api/projects", json={"name": f"P{number}"}, headers=user.headers
        )
        assert response.status_code == 201

    # The usage counter, then the limit and the 402.
    response = await ask(billing_client, user)
    assert response.headers["X-Usage-Limit"] == "2000"
    assert response.headers["X-Usage-Remaining"] == "1999"
    await set_usage(user.id, 1999)
    assert (await ask(billing_client, user)).headers["X-Usage-Remaining"] == "0"
    response = await ask(billing_client, user)
    assert response.status_code == 402
    assert response.json()["plan"] == "starter" and response.json()["limit_value"] == 2000
    account = (await billing_client.get("/api/account", headers=user.headers)).json()
    assert account["usage"]["messages"]["percent"] == 100.0

    # Downgrade to Free: cancelled at the period's end, Starter until then.
    response = await billing_client.post(
        "/api/billing/change-plan", json={"plan": "free"}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["plan"] == "starter" and response.json()["cancel_at_period_end"]
    stripe_fake.end_period(subscription_id)
    await deliver(stripe_fake.event("customer.subscription.deleted"))
    account = (await billing_client.get("/api/account", headers=user.headers)).json()
    assert account["subscription"]["plan"] == "free"

    # The five projects are kept; a sixth is refused on Free (3 projects).
    projects = (await billing_client.get("/api/projects", headers=user.headers)).json()
    assert len(projects) == 5
    assert account["usage"]["projects"] == {"used": 5, "limit": 3, "percent": 166.7}
    response = await billing_client.post("/api/projects", json={"name": "P6"}, headers=user.headers)
    assert response.status_code == 402 and response.json()["plan"] == "free"
    # Free's own period (the calendar month) starts its own counter.
    assert (await ask(billing_client, user)).status_code == 200

    # Nothing left to cancel.
    response = await billing_client.post("/api/billing/cancel", headers=user.headers)
    assert response.status_code == 409

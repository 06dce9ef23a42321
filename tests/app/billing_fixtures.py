"""Fixtures for the billing tests (loaded as a pytest plugin from tests/app/conftest.py).

stripe_fake       the local Stripe API stand-in (tests/fakes/stripe_server.py), one
                  server per test session, its state reset before each test.
billing_settings  chat_settings (the Anthropic stand-in) plus Stripe pointed at the
                  stand-in: a secret key, a webhook secret, and Starter and Pro prices
                  made in the stand-in for this test (Enterprise: contact us).
billing_client    an httpx.AsyncClient on create_app(billing_settings).
deliver           ``await deliver(event, *, secret=..., timestamp=..., headers=...)``:
                  POST the event to /api/billing/webhook signed with the real scheme.
set_usage         ``await set_usage(user_id, messages)``: the user's message counter
                  for the current period, set directly (reaching a limit of 2,000 by
                  sending 2,000 messages would only make the tests slow).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text

from app.core.config import Settings
from app.core.db import get_engine, get_sessionmaker
from app.main import create_app
from app.services import usage
from tests.fakes.stripe_server import FakeStripeServer, signed_event

WEBHOOK_SECRET = "whsec_test_standin_secret"  # the stand-in's, not a real one


@pytest.fixture(scope="session")
def _stripe_server() -> Iterator[FakeStripeServer]:
    with FakeStripeServer() as server:
        yield server


@pytest.fixture
def stripe_fake(_stripe_server: FakeStripeServer) -> FakeStripeServer:
    _stripe_server.reset()
    _stripe_server.hang_seconds = 5.0
    return _stripe_server


@pytest.fixture
def billing_settings(chat_settings: Settings, stripe_fake: FakeStripeServer) -> Settings:
    return chat_settings.model_copy(
        update={
            "stripe_secret_key": SecretStr(stripe_fake.api_key),
            "stripe_webhook_secret": SecretStr(WEBHOOK_SECRET),
            "stripe_api_base": stripe_fake.base_url,
            "stripe_price_starter": stripe_fake.create_price(4900, "Starter"),
            "stripe_price_pro": stripe_fake.create_price(14900, "Pro"),
            "stripe_price_enterprise": None,
            "stripe_timeout_seconds": 1.0,
            "stripe_max_network_retries": 0,
            "public_url": "https://kt.example.com",
        }
    )


@pytest.fixture
async def billing_client(billing_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    billing_app = create_app(billing_settings)
    async with billing_app.router.lifespan_context(billing_app):
        transport = httpx.ASGITransport(app=billing_app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", timeout=30
        ) as client:
            yield client


Deliver = Callable[..., Awaitable[httpx.Response]]


@pytest.fixture
def deliver(billing_client: httpx.AsyncClient) -> Deliver:
    async def post(
        event: dict[str, Any],
        *,
        secret: str = WEBHOOK_SECRET,
        timestamp: int | None = None,
    ) -> httpx.Response:
        body, headers = signed_event(event, secret, timestamp=timestamp)
        return await billing_client.post("/api/billing/webhook", content=body, headers=headers)

    return post


@pytest.fixture
def set_usage(billing_settings: Settings) -> Callable[..., Awaitable[None]]:
    async def set_counter(user_id, messages: int) -> None:
        async with get_sessionmaker(billing_settings)() as session:
            state = await usage.plan_state(session, user_id, billing_settings)
        async with get_engine(billing_settings).begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO usage_counters (user_id, period_start, messages) "
                    "VALUES (:u, :p, :m) ON CONFLICT (user_id, period_start) "
                    "DO UPDATE SET messages = :m"
                ),
                {"u": user_id, "p": state.period_start, "m": messages},
            )

    return set_counter

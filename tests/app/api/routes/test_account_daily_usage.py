"""GET /api/account/usage/daily: model calls per day for the account page's chart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app.core.db import get_engine
from tests.app.utils.chat import ask

DAILY = "/api/account/usage/daily"


async def test_answers_are_counted_on_their_day(chat_client, chat_settings, user_factory):
    user = await user_factory()
    first = await ask(chat_client, user.headers, "Hello?")
    await ask(chat_client, user.headers, "Again?", conversation_id=first["conversation_id"])
    await ask(chat_client, user.headers, "Elsewhere?")
    # One answer moved to three days ago.
    async with get_engine(chat_settings).begin() as connection:
        await connection.execute(
            text(
                "UPDATE messages SET created_at = now() - interval '3 days' WHERE id = "
                "(SELECT m.id FROM messages m WHERE m.role = 'assistant' LIMIT 1)"
            )
        )
    other = await user_factory()
    await ask(chat_client, other.headers, "Not mine")

    response = await chat_client.get(DAILY, params={"days": 7}, headers=user.headers)
    assert response.status_code == 200, response.text
    days = response.json()["days"]
    today = datetime.now(UTC).date()
    assert [d["day"] for d in days] == [
        (today - timedelta(days=n)).isoformat() for n in range(6, -1, -1)
    ]
    counts = {d["day"]: d["messages"] for d in days}
    assert counts[today.isoformat()] == 2
    assert counts[(today - timedelta(days=3)).isoformat()] == 1
    assert sum(counts.values()) == 3


async def test_thirty_days_by_default_and_zero_for_a_new_account(client, user_factory):
    user = await user_factory()
    days = (await client.get(DAILY, headers=user.headers)).json()["days"]
    assert len(days) == 30
    assert {d["messages"] for d in days} == {0}


@pytest.mark.parametrize("days", [0, -1, 367, "week"])
async def test_bad_days_is_422(client, user_factory, days):
    user = await user_factory()
    response = await client.get(DAILY, params={"days": days}, headers=user.headers)
    assert response.status_code == 422


async def test_daily_usage_needs_a_login(client):
    assert (await client.get(DAILY)).status_code == 401

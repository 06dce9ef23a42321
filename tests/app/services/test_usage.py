"""Usage limits in the database: the atomic message count, periods, and the other limits."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app.core.db import get_sessionmaker
from app.models.billing import Subscription, UsageCounter
from app.models.project import Project
from app.services import usage


async def _user(db_session) -> uuid.UUID:
    user_id = uuid.uuid4()
    await db_session.execute(
        text("INSERT INTO users (id, email, password_hash) VALUES (:id, :email, 'x')"),
        {"id": user_id, "email": f"{user_id}@example.com"},
    )
    await db_session.commit()
    return user_id


async def _set_messages(db_session, user_id, period_start, messages: int) -> None:
    db_session.add(UsageCounter(user_id=user_id, period_start=period_start, messages=messages))
    await db_session.commit()


async def test_messages_are_counted_up_to_the_limit_then_refused(db_session, settings):
    user_id = await _user(db_session)
    quota = await usage.consume_message(db_session, user_id, settings)
    assert (quota.limit, quota.used, quota.remaining) == (100, 1, 99)
    start, end = usage.calendar_month(datetime.now(UTC))
    assert quota.period_start == start and quota.reset_at == end

    await _set_messages_to(db_session, user_id, start, 99)
    quota = await usage.consume_message(db_session, user_id, settings)
    assert (quota.used, quota.remaining) == (100, 0)
    with pytest.raises(usage.LimitExceeded) as refused:
        await usage.consume_message(db_session, user_id, settings)
    error = refused.value
    assert (error.limit, error.limit_value, error.usage) == ("messages_per_month", 100, 100)
    assert error.reset_at == end
    assert f"renews on {end:%Y-%m-%d}" in error.message
    counter = await db_session.get(UsageCounter, (user_id, start), populate_existing=True)
    assert counter.messages == 100  # the refused request counted nothing


async def _set_messages_to(db_session, user_id, period_start, messages):
    await db_session.execute(
        text("UPDATE usage_counters SET messages = :m WHERE user_id = :u AND period_start = :p"),
        {"m": messages, "u": user_id, "p": period_start},
    )
    await db_session.commit()


async def test_fifty_concurrent_requests_with_one_message_left_one_succeeds(db_session, settings):
    user_id = await _user(db_session)
    start, _ = usage.calendar_month(datetime.now(UTC))
    await _set_messages(db_session, user_id, start, 99)
    maker = get_sessionmaker(settings)

    async def attempt() -> bool:
        async with maker() as session:
            try:
                await usage.consume_message(session, user_id, settings)
            except usage.LimitExceeded:
                return False
            return True

    results = await asyncio.gather(*(attempt() for _ in range(50)))
    assert results.count(True) == 1
    counter = await db_session.get(UsageCounter, (user_id, start), populate_existing=True)
    assert counter.messages == 100


async def test_a_released_message_and_tokens(db_session, settings):
    user_id = await _user(db_session)
    quota = await usage.consume_message(db_session, user_id, settings)
    await usage.add_tokens(db_session, quota, 120, 30)
    await db_session.commit()
    second = await usage.consume_message(db_session, user_id, settings)
    await usage.release_message(db_session, second)  # the model produced nothing
    await db_session.commit()
    counter = await db_session.get(
        UsageCounter, (user_id, quota.period_start), populate_existing=True
    )
    assert (counter.messages, counter.input_tokens, counter.output_tokens) == (1, 120, 30)


async def test_the_plan_and_period_come_from_a_live_subscription(db_session, settings):
    user_id = await _user(db_session)
    now = datetime.now(UTC).replace(microsecond=0)
    period_start, period_end = now - timedelta(days=3), now + timedelta(days=27)
    db_session.add(
        Subscription(
            id="sub_live",
            user_id=user_id,
            plan="pro",
            price_id="price_x",
            status="active",
            current_period_start=period_start,
            current_period_end=period_end,
            stripe_created_at=period_start,
        )
    )
    await db_session.commit()
    state = await usage.plan_state(db_session, user_id, settings)
    assert state.plan.key == "pro"
    assert (state.period_start, state.period_end) == (period_start, period_end)

    # Canceled: back to the default plan and the calendar month.
    subscription = await db_session.get(Subscription, "sub_live")
    subscription.status = "canceled"
    await db_session.commit()
    state = await usage.plan_state(db_session, user_id, settings)
    assert state.plan.key == "free" and state.subscription is None
    assert state.period_start == usage.calendar_month(datetime.now(UTC))[0]


def test_a_period_whose_renewal_has_not_arrived_rolls_forward():
    subscription = Subscription(
        current_period_start=datetime(2026, 1, 31, tzinfo=UTC),
        current_period_end=datetime(2026, 2, 28, tzinfo=UTC),
    )
    start, end = usage.current_period(
        subscription.current_period_start,
        subscription.current_period_end,
        now=datetime(2026, 3, 5, tzinfo=UTC),
    )
    assert (start, end) == (datetime(2026, 2, 28, tzinfo=UTC), datetime(2026, 3, 28, tzinfo=UTC))
    assert usage.calendar_month(datetime(2026, 12, 15, tzinfo=UTC)) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )


async def test_models_outside_the_plan_are_refused(db_session, settings):
    user_id = await _user(db_session)
    with pytest.raises(usage.LimitExceeded) as refused:
        await usage.consume_message(db_session, user_id, settings, model="claude-opus-4-1")
    assert refused.value.limit == "model"
    assert "claude-opus-4-1" in refused.value.message
    quota = await usage.consume_message(db_session, user_id, settings, model="claude-haiku-4-5")
    assert quota.used == 1


async def test_project_document_and_storage_limits(db_session, settings):
    user_id = await _user(db_session)
    for number in range(3):
        await usage.check_new_project(db_session, user_id, settings)
        db_session.add(Project(owner_id=user_id, name=f"p{number}"))
        await db_session.commit()
    with pytest.raises(usage.LimitExceeded) as refused:
        await usage.check_new_project(db_session, user_id, settings)
    await db_session.rollback()
    assert (refused.value.limit, refused.value.limit_value, refused.value.usage) == (
        "projects",
        3,
        3,
    )

    mib = 1024 * 1024
    await usage.check_new_documents(db_session, user_id, settings, [5 * mib, 5 * mib])
    await db_session.rollback()
    with pytest.raises(usage.LimitExceeded) as refused:
        await usage.check_new_documents(db_session, user_id, settings, [11 * mib])
    await db_session.rollback()
    assert refused.value.limit == "max_upload_mb" and refused.value.limit_value == 10
    with pytest.raises(usage.LimitExceeded) as refused:
        await usage.check_new_documents(db_session, user_id, settings, [mib] * 51)
    await db_session.rollback()
    assert refused.value.limit == "documents"
    with pytest.raises(usage.LimitExceeded) as refused:
        await usage.check_new_documents(db_session, user_id, settings, [9 * mib] * 12)
    await db_session.rollback()
    assert refused.value.limit == "storage_mb" and refused.value.limit_value == 100


async def test_concurrent_project_creation_stops_at_the_limit(db_session, settings):
    user_id = await _user(db_session)
    maker = get_sessionmaker(settings)

    async def create(number: int) -> bool:
        async with maker() as session:
            try:
                await usage.check_new_project(session, user_id, settings)
            except usage.LimitExceeded:
                return False
            session.add(Project(owner_id=user_id, name=f"p{number}"))
            await session.commit()
            return True

    results = await asyncio.gather(*(create(n) for n in range(10)))
    assert results.count(True) == 3


async def test_artifact_versions_are_capped(db_session, settings):
    user_id = await _user(db_session)
    await usage.check_new_artifact_version(db_session, user_id, settings, 9)
    with pytest.raises(usage.LimitExceeded) as refused:
        await usage.check_new_artifact_version(db_session, user_id, settings, 10)
    assert refused.value.limit == "artifact_versions"


def test_a_nearly_full_disk_refuses_uploads(settings):
    usage.check_disk(settings.model_copy(update={"min_free_disk_mb": 0}))
    with pytest.raises(usage.DiskFull) as refused:
        usage.check_disk(settings.model_copy(update={"min_free_disk_mb": 10**12}))
    assert "nearly full" in str(refused.value)

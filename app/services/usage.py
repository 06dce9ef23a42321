"""Usage limits: which plan a user is on, what they used, and the atomic checks.

Every limit is checked where the thing is made, in the database, so concurrent
requests cannot slip past it together:

* messages (every call of the model: chat answers, artifacts written from a request,
  artifact regenerations) are counted *before* the model runs, by one
  ``INSERT ... ON CONFLICT DO UPDATE ... WHERE messages < limit RETURNING`` on the
  user's counter row for the billing period. Postgres re-checks the condition on the
  latest row version under the row lock, so with one message left exactly one of any
  number of concurrent requests gets it. A call that ends with nothing at all (the
  model failed before a word) hands its message back; so does a turn whose answer could
  not be saved because Postgres went away (``release_when_reachable``, retried in the
  background until the server is back).
* projects, documents and storage are counted under a lock on the user's row (taken
  by ``lock_account``) that lasts until the caller's transaction commits the new rows.

A downgrade keeps everything already made: limits only refuse *new* things.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.db import DatabaseUnavailable
from app.core.plans import Plan, get_plan
from app.models.billing import Subscription, UsageCounter
from app.models.document import Document
from app.models.project import Project
from app.models.user import User

logger = logging.getLogger(__name__)

# Stripe statuses in which the subscription's plan applies. past_due: Stripe is still
# retrying the card, so the customer keeps the plan meanwhile.
LIVE_STATUSES = ("active", "trialing", "past_due")


class LimitExceeded(Exception):
    """A plan limit refuses the request (answered 402 with what, how much, and until when)."""

    def __init__(
        self,
        message: str,
        *,
        limit: str,
        plan: Plan,
        limit_value: int | None,
        usage: int,
        reset_at: datetime | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.limit = limit
        self.plan = plan
        self.limit_value = limit_value
        self.usage = usage
        self.reset_at = reset_at


class DiskFull(Exception):
    """The data disk is nearly full (answered 507, whatever the plan)."""


# --- the plan and the billing period ---------------------------------------------------------
@dataclass(frozen=True)
class PlanState:
    """A user's plan now, with the billing period their message counter belongs to."""

    plan: Plan
    subscription: Subscription | None
    period_start: datetime
    period_end: datetime


def _add_month(moment: datetime) -> datetime:
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def calendar_month(now: datetime) -> tuple[datetime, datetime]:
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    return start, _add_month(start)


def current_period(
    start: datetime | None, end: datetime | None, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """The billing period containing ``now``: the subscription's period ``start``-``end``
    (rolled forward month by month if its renewal has not reached us yet), or without one
    the calendar month (UTC)."""
    now = now or datetime.now(UTC)
    if start is None or end is None:
        return calendar_month(now)
    while end <= now:
        start, end = end, _add_month(end)
    return start, end


async def live_subscription(session: AsyncSession, user_id: uuid.UUID) -> Subscription | None:
    """The user's subscription that currently gives them a plan (the newest live one)."""
    return await session.scalar(
        select(Subscription)
        .where(Subscription.user_id == user_id, Subscription.status.in_(LIVE_STATUSES))
        .order_by(Subscription.stripe_created_at.desc())
        .limit(1)
    )


async def plan_state(session: AsyncSession, user_id: uuid.UUID, settings: Settings) -> PlanState:
    subscription = await live_subscription(session, user_id)
    if subscription is not None and subscription.plan is not None:
        plan = get_plan(subscription.plan)
    else:
        plan, subscription = get_plan(settings.default_plan), None
    start, end = current_period(
        subscription.current_period_start if subscription else None,
        subscription.current_period_end if subscription else None,
    )
    return PlanState(plan=plan, subscription=subscription, period_start=start, period_end=end)


# --- messages --------------------------------------------------------------------------------
@dataclass(frozen=True)
class MessageQuota:
    """One message taken from the period's allowance (for the X-Usage-* headers)."""

    user_id: uuid.UUID
    period_start: datetime
    limit: int | None
    used: int
    reset_at: datetime

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used, 0)


# The plan and period for counting, in one round trip.
_PLAN_FOR_COUNTING = text(
    """
    SELECT s.plan, s.period_start, s.period_end
    FROM (SELECT 1) AS one
    LEFT JOIN LATERAL (
        SELECT plan, current_period_start AS period_start, current_period_end AS period_end
        FROM subscriptions
        WHERE user_id = :user_id AND status = ANY(:statuses)
        ORDER BY stripe_created_at DESC
        LIMIT 1
    ) AS s ON true
    """
)
_CONSUME = text(
    """
    INSERT INTO usage_counters AS c (user_id, period_start, messages)
    VALUES (:user_id, :period_start, 1)
    ON CONFLICT (user_id, period_start) DO UPDATE SET messages = c.messages + 1
    WHERE c.messages < :limit
    RETURNING c.messages
    """
)
_CONSUME_UNLIMITED = text(
    """
    INSERT INTO usage_counters AS c (user_id, period_start, messages)
    VALUES (:user_id, :period_start, 1)
    ON CONFLICT (user_id, period_start) DO UPDATE SET messages = c.messages + 1
    RETURNING c.messages
    """
)


def check_model(state: PlanState, settings: Settings, model: str) -> None:
    """Refuse a model the plan does not include (the settings' own list is checked first)."""
    allowed = state.plan.allowed_models(settings)
    if model not in allowed:
        raise LimitExceeded(
            f"The {state.plan.name} plan does not include the model '{model}'; it includes "
            f"{', '.join(allowed) or 'no model'}. Upgrade to use it.",
            limit="model",
            plan=state.plan,
            limit_value=None,
            usage=0,
        )


async def consume_message(
    session: AsyncSession,
    user_id: uuid.UUID,
    settings: Settings,
    *,
    model: str | None = None,
) -> MessageQuota:
    """Count one model call against the period's allowance, or raise LimitExceeded.

    Commits: the count must be visible to concurrent requests before the model runs.
    ``model``: also check that the plan includes it.
    """
    row = (
        await session.execute(
            _PLAN_FOR_COUNTING, {"user_id": user_id, "statuses": list(LIVE_STATUSES)}
        )
    ).one()
    if row.plan is not None:  # the same choice as plan_state, without loading the row
        plan, (start, end) = get_plan(row.plan), current_period(row.period_start, row.period_end)
    else:
        plan, (start, end) = get_plan(settings.default_plan), current_period(None, None)
    state = PlanState(plan=plan, subscription=None, period_start=start, period_end=end)
    if model is not None:
        check_model(state, settings, model)
    limit = plan.messages_per_month
    params = {"user_id": user_id, "period_start": start}
    if limit is None:
        used = await session.scalar(_CONSUME_UNLIMITED, params)
    elif limit <= 0:
        used = None
    else:
        used = await session.scalar(_CONSUME, {**params, "limit": limit})
    await session.commit()
    if used is None:
        raise LimitExceeded(
            f"You have used all {limit} messages of the {state.plan.name} plan for this "
            f"period; it renews on {state.period_end:%Y-%m-%d}. Upgrade for more.",
            limit="messages_per_month",
            plan=state.plan,
            limit_value=limit,
            usage=limit or 0,
            reset_at=state.period_end,
        )
    return MessageQuota(
        user_id=user_id,
        period_start=state.period_start,
        limit=limit,
        used=used,
        reset_at=state.period_end,
    )


async def release_message(session: AsyncSession, quota: MessageQuota) -> None:
    """Hand back a message whose model call produced nothing (not committed here)."""
    await session.execute(
        update(UsageCounter)
        .where(
            UsageCounter.user_id == quota.user_id,
            UsageCounter.period_start == quota.period_start,
            UsageCounter.messages > 0,
        )
        .values(messages=UsageCounter.messages - 1)
    )


# Waits between attempts to hand a message back while Postgres is away: about five minutes
# in all, longer than a restart or a crash recovery takes.
RELEASE_RETRY_DELAYS = (0.5, 1, 2, 4, 8, *(15,) * 19)


async def release_when_reachable(
    sessionmaker: async_sessionmaker[AsyncSession], quota: MessageQuota
) -> bool:
    """Hand back a message whose turn could not be saved because Postgres went away:
    tried at once and then again while the server stays unreachable. False (logged) if it
    never came back in time; the message then stays counted."""
    for delay in (*RELEASE_RETRY_DELAYS, None):
        try:
            async with sessionmaker() as session:
                await release_message(session, quota)
                await session.commit()
            return True
        except DatabaseUnavailable:
            if delay is None:
                break
            await asyncio.sleep(delay)
    logger.warning(
        "a message of user %s stays counted: the database stayed unreachable", quota.user_id
    )
    return False


async def add_tokens(
    session: AsyncSession, quota: MessageQuota, input_tokens: int, output_tokens: int
) -> None:
    """Add a finished call's tokens to its period (in the caller's transaction)."""
    await session.execute(
        update(UsageCounter)
        .where(
            UsageCounter.user_id == quota.user_id,
            UsageCounter.period_start == quota.period_start,
        )
        .values(
            input_tokens=UsageCounter.input_tokens + input_tokens,
            output_tokens=UsageCounter.output_tokens + output_tokens,
        )
    )


async def refund(session: AsyncSession, quota: MessageQuota | None) -> None:
    """Hand back the message of a model call that failed (committed; the transaction's
    half-done work is rolled back first)."""
    await session.rollback()
    if quota is not None:
        await release_message(session, quota)
        await session.commit()


async def record_tokens(
    session: AsyncSession,
    quota: MessageQuota | None,
    input_tokens: int | None,
    output_tokens: int | None,
) -> None:
    """Add a finished call's tokens to its period (committed)."""
    if quota is not None and (input_tokens or output_tokens):
        await add_tokens(session, quota, input_tokens or 0, output_tokens or 0)
        await session.commit()


# --- projects, documents, storage, artifact versions -----------------------------------------
async def lock_account(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Serialise the user's creations until the caller's transaction ends."""
    await session.execute(select(User.id).where(User.id == user_id).with_for_update())


async def check_new_project(session: AsyncSession, user_id: uuid.UUID, settings: Settings) -> None:
    """Raise LimitExceeded if the user may not make another project. Takes the account
    lock: call it in the transaction that inserts the project."""
    await lock_account(session, user_id)
    state = await plan_state(session, user_id, settings)
    limit = state.plan.projects
    if limit is None:
        return
    count = await session.scalar(select(func.count()).where(Project.owner_id == user_id)) or 0
    if count >= limit:
        raise LimitExceeded(
            f"The {state.plan.name} plan allows {limit} projects and you have {count}. "
            "Delete one or upgrade to make another.",
            limit="projects",
            plan=state.plan,
            limit_value=limit,
            usage=count,
        )


@dataclass(frozen=True)
class Holdings:
    projects: int
    documents: int
    storage_bytes: int


async def holdings(session: AsyncSession, user_id: uuid.UUID) -> Holdings:
    projects = await session.scalar(select(func.count()).where(Project.owner_id == user_id))
    documents, storage = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(Document.size_bytes), 0)).where(
                Document.owner_id == user_id
            )
        )
    ).one()
    return Holdings(projects=projects or 0, documents=documents, storage_bytes=int(storage))


def check_disk(settings: Settings) -> None:
    """Raise DiskFull when the data disk has less free space than MIN_FREE_DISK_MB."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    free_mb = shutil.disk_usage(settings.data_dir).free // (1024 * 1024)
    if free_mb < settings.min_free_disk_mb:
        raise DiskFull(
            f"The server's disk is nearly full ({free_mb} MiB free); uploads are paused "
            "until an administrator makes room. Nothing was stored."
        )


async def upload_size_limit(session: AsyncSession, user_id: uuid.UUID, settings: Settings) -> int:
    """The largest file the user's plan accepts, in bytes (MAX_UPLOAD_MB caps every plan)."""
    state = await plan_state(session, user_id, settings)
    return state.plan.upload_limit_mb(settings) * 1024 * 1024


async def check_new_documents(
    session: AsyncSession, user_id: uuid.UUID, settings: Settings, sizes: list[int]
) -> None:
    """Raise LimitExceeded if files of ``sizes`` bytes would pass the plan's document,
    storage or file-size limits. Takes the account lock: call it in the transaction that
    inserts the documents. (Duplicates of stored files are counted too: a slight
    over-estimate that never lets the limits be passed.)"""
    await lock_account(session, user_id)
    state = await plan_state(session, user_id, settings)
    plan = state.plan
    largest = plan.upload_limit_mb(settings)
    if sizes and max(sizes) > largest * 1024 * 1024:
        raise LimitExceeded(
            f"The {plan.name} plan accepts files up to {largest} MiB. Upgrade for larger files.",
            limit="max_upload_mb",
            plan=plan,
            limit_value=largest,
            usage=-(-max(sizes) // (1024 * 1024)),
        )
    held = await holdings(session, user_id)
    if plan.documents is not None and held.documents + len(sizes) > plan.documents:
        raise LimitExceeded(
            f"The {plan.name} plan allows {plan.documents} documents; you have "
            f"{held.documents} and sent {len(sizes)}. Delete some or upgrade.",
            limit="documents",
            plan=plan,
            limit_value=plan.documents,
            usage=held.documents,
        )
    if plan.storage_mb is not None:
        limit_bytes = plan.storage_mb * 1024 * 1024
        if held.storage_bytes + sum(sizes) > limit_bytes:
            raise LimitExceeded(
                f"The {plan.name} plan allows {plan.storage_mb} MiB of documents; you use "
                f"{held.storage_bytes / 1048576:.1f} MiB and sent {sum(sizes) / 1048576:.1f} "
                "MiB. Delete some or upgrade.",
                limit="storage_mb",
                plan=plan,
                limit_value=plan.storage_mb,
                usage=-(-held.storage_bytes // (1024 * 1024)),
            )


async def check_new_artifact_version(
    session: AsyncSession, user_id: uuid.UUID, settings: Settings, versions: int
) -> None:
    """Raise LimitExceeded if an artifact with ``versions`` versions may not get another."""
    state = await plan_state(session, user_id, settings)
    limit = state.plan.artifact_versions
    if versions >= limit:
        raise LimitExceeded(
            f"This artifact has {versions} versions, the most the {state.plan.name} plan "
            "keeps. Start a new artifact from it or upgrade.",
            limit="artifact_versions",
            plan=state.plan,
            limit_value=limit,
            usage=versions,
        )


# --- the account page ------------------------------------------------------------------------
@dataclass(frozen=True)
class AccountUsage:
    state: PlanState
    messages: int
    input_tokens: int
    output_tokens: int
    holdings: Holdings


async def account_usage(
    session: AsyncSession, user_id: uuid.UUID, settings: Settings
) -> AccountUsage:
    state = await plan_state(session, user_id, settings)
    counter = await session.get(UsageCounter, (user_id, state.period_start))
    return AccountUsage(
        state=state,
        messages=counter.messages if counter else 0,
        input_tokens=counter.input_tokens if counter else 0,
        output_tokens=counter.output_tokens if counter else 0,
        holdings=await holdings(session, user_id),
    )

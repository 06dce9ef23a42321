"""/api/account: the account page's summary (plan, usage this period, storage, reset) and
its daily usage chart."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import CurrentUser, SessionDep, SettingsDep
from app.schemas.account import DailyUsageItem, DailyUsageRead
from app.schemas.billing import (
    AccountRead,
    AccountUsage,
    UsageItem,
    plan_limits,
    subscription_read,
)
from app.services import usage, usage_history

router = APIRouter(prefix="/account", tags=["account"])

_MIB = 1024 * 1024


def _item(used: int, limit: int | None) -> UsageItem:
    percent = None if not limit else round(100 * used / limit, 1)
    return UsageItem(used=used, limit=limit, percent=percent)


@router.get("", response_model=AccountRead)
async def get_account(user: CurrentUser, session: SessionDep, settings: SettingsDep) -> AccountRead:
    """The plan, what was used this billing period (with percentages of the limits),
    the storage used and when the message counter starts again."""
    account = await usage.account_usage(session, user.id, settings)
    plan, held = account.state.plan, account.holdings
    return AccountRead(
        email=user.email,
        subscription=subscription_read(account.state),
        limits=plan_limits(plan, settings),
        usage=AccountUsage(
            messages=_item(account.messages, plan.messages_per_month),
            projects=_item(held.projects, plan.projects),
            documents=_item(held.documents, plan.documents),
            storage_mb=_item(-(-held.storage_bytes // _MIB), plan.storage_mb),
            input_tokens=account.input_tokens,
            output_tokens=account.output_tokens,
        ),
        storage_bytes=held.storage_bytes,
        reset_at=account.state.period_end,
        upgrade_url=f"{settings.public_url}/pricing",
    )


@router.get("/usage/daily", response_model=DailyUsageRead)
async def get_daily_usage(
    user: CurrentUser,
    session: SessionDep,
    days: Annotated[int, Query(ge=1, le=366, description="How many days, ending today.")] = 30,
) -> DailyUsageRead:
    """Model calls per day (UTC) for the account page's chart, oldest first."""
    series = await usage_history.daily_messages(session, user.id, days)
    return DailyUsageRead(days=[DailyUsageItem(day=day, messages=n) for day, n in series])

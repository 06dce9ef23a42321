"""What the admin page shows and changes: users with their plan and usage, disabling
an account, and the documents whose processing failed (across all users).

Disabling is immediate: the user's refresh tokens are revoked and ``get_current_user``
refuses access tokens of an inactive account, so an open session ends at its next call.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.plans import get_plan
from app.models.billing import Subscription, UsageCounter
from app.models.document import Document, DocumentStatus
from app.models.project import Project
from app.models.user import User
from app.services import usage
from app.services.accounts import revoke_all_tokens


class SelfDisable(Exception):
    """An admin tried to disable their own account (they would lock themselves out)."""


@dataclass(frozen=True)
class UserSummary:
    user: User
    plan: str
    messages_used: int
    messages_limit: int | None
    documents: int
    storage_bytes: int


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_users(
    session: AsyncSession,
    settings: Settings,
    *,
    search: str | None,
    limit: int,
    offset: int,
    user_id: uuid.UUID | None = None,
) -> tuple[list[UserSummary], int]:
    """One page of users, newest first (``search``: part of the e-mail address; or the
    one user ``user_id``), with the total that matches. A handful of queries per page,
    not one per user."""
    where = []
    if user_id is not None:
        where.append(User.id == user_id)
    if search:
        where.append(User.email.ilike(f"%{_escape_like(search.lower())}%", escape="\\"))
    total = await session.scalar(select(func.count()).select_from(User).where(*where)) or 0
    users = list(
        await session.scalars(
            select(User)
            .where(*where)
            .order_by(User.created_at.desc(), User.id)
            .limit(limit)
            .offset(offset)
        )
    )
    ids = [user.id for user in users]
    if not ids:
        return [], total
    # The newest live subscription of each user: the same choice as usage.plan_state.
    subscriptions = {
        subscription.user_id: subscription
        for subscription in await session.scalars(
            select(Subscription)
            .where(Subscription.user_id.in_(ids), Subscription.status.in_(usage.LIVE_STATUSES))
            .order_by(Subscription.user_id, Subscription.stripe_created_at.desc())
            .distinct(Subscription.user_id)
        )
    }
    plans: dict[uuid.UUID, tuple[str, datetime]] = {}
    for listed in ids:
        subscription = subscriptions.get(listed)
        if subscription is not None and subscription.plan is not None:
            plan_key = subscription.plan
            start, _ = usage.current_period(
                subscription.current_period_start, subscription.current_period_end
            )
        else:
            plan_key, (start, _) = settings.default_plan, usage.current_period(None, None)
        plans[listed] = (plan_key, start)
    counters = dict(
        (
            await session.execute(
                select(UsageCounter.user_id, UsageCounter.messages).where(
                    tuple_(UsageCounter.user_id, UsageCounter.period_start).in_(
                        [(listed, start) for listed, (_, start) in plans.items()]
                    )
                )
            )
        ).all()
    )
    held = {
        row.owner_id: row
        for row in await session.execute(
            select(
                Document.owner_id,
                func.count().label("documents"),
                func.coalesce(func.sum(Document.size_bytes), 0).label("storage"),
            )
            .where(Document.owner_id.in_(ids))
            .group_by(Document.owner_id)
        )
    }
    summaries = []
    for user in users:
        plan_key, _ = plans[user.id]
        documents = held.get(user.id)
        summaries.append(
            UserSummary(
                user=user,
                plan=plan_key,
                messages_used=counters.get(user.id, 0),
                messages_limit=get_plan(plan_key).messages_per_month,
                documents=documents.documents if documents else 0,
                storage_bytes=int(documents.storage) if documents else 0,
            )
        )
    return summaries, total


async def set_active(
    session: AsyncSession, admin: User, user_id: uuid.UUID, active: bool
) -> User | None:
    """Enable or disable an account (None: no such user). Disabling revokes every
    refresh token of the user. Raises SelfDisable for the admin's own account."""
    user = await session.get(User, user_id)
    if user is None:
        return None
    if user.id == admin.id and not active:
        raise SelfDisable("You cannot disable your own account.")
    user.is_active = active
    if not active:
        await revoke_all_tokens(session, user.id)
    await session.commit()
    await session.refresh(user)
    return user


@dataclass(frozen=True)
class FailedDocument:
    document: Document
    owner_email: str
    project_name: str


async def failed_documents(session: AsyncSession, *, limit: int) -> list[FailedDocument]:
    """The documents whose processing failed, most recent first, with their owner."""
    rows = await session.execute(
        select(Document, User.email, Project.name)
        .join(User, User.id == Document.owner_id)
        .join(Project, Project.id == Document.project_id)
        .where(Document.status == DocumentStatus.FAILED)
        .order_by(Document.updated_at.desc())
        .limit(limit)
    )
    return [FailedDocument(document=d, owner_email=e, project_name=p) for d, e, p in rows.all()]

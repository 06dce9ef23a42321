"""Model calls per day, for the account page's chart.

The period counter (``usage_counters``) only holds a total, so the days are counted
from what the calls left behind: chat answers (assistant messages that did not fail:
a failed call hands its message back) and artifact versions the model wrote (they
carry token counts; edits by hand do not). Deleted conversations take their days'
answers with them; the period total on the account page still counts them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Date, cast, func, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.conversation import Artifact, ArtifactVersion, Conversation, Message


async def daily_messages(
    session: AsyncSession, user_id: uuid.UUID, days: int, today: date | None = None
) -> list[tuple[date, int]]:
    """(day, model calls) for the ``days`` days ending ``today`` (UTC), oldest first,
    days without calls included as 0."""
    today = today or datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    since = datetime(first.year, first.month, first.day, tzinfo=UTC)
    utc_day = lambda column: cast(func.timezone("UTC", column), Date)  # noqa: E731
    answers = (
        select(utc_day(Message.created_at).label("day"))
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            Conversation.user_id == user_id,
            Message.role == "assistant",
            Message.status != "failed",
            Message.created_at >= since,
        )
    )
    written = (
        select(utc_day(ArtifactVersion.created_at).label("day"))
        .join(Artifact, Artifact.id == ArtifactVersion.artifact_id)
        .where(
            Artifact.user_id == user_id,
            ArtifactVersion.output_tokens.is_not(None),
            ArtifactVersion.created_at >= since,
        )
    )
    calls = union_all(answers, written).subquery()
    counted = dict(
        (await session.execute(select(calls.c.day, func.count()).group_by(calls.c.day))).all()
    )
    return [(day, counted.get(day, 0)) for day in (first + timedelta(days=n) for n in range(days))]

"""Response bodies of /api/account beyond the account summary (app/schemas/billing.py)."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field


class DailyUsageItem(BaseModel):
    day: date
    messages: int = Field(description="Model calls that day (UTC): chat answers, artifacts.")


class DailyUsageRead(BaseModel):
    days: list[DailyUsageItem] = Field(description="Oldest first, one entry per day.")

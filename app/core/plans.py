"""The plans people can be on, and what each allows: the one place limits are defined.

Prices are shown to people; what Stripe charges is the Stripe price whose id comes
from the settings (``STRIPE_PRICE_<PLAN>``), never from this file. A limit of ``None``
means "no limit". ``models=None`` means every model in ``CHAT_ALLOWED_MODELS``.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.config import PlanName, Settings


@dataclass(frozen=True)
class Plan:
    key: PlanName
    name: str
    price_cents: int  # per month, USD
    messages_per_month: int | None  # chat answers and artifacts written by the model
    projects: int | None
    documents: int | None
    storage_mb: int | None
    max_upload_mb: int  # per file; MAX_UPLOAD_MB caps it for every plan
    artifact_versions: int  # per artifact
    models: tuple[str, ...] | None

    def price_id(self, settings: Settings) -> str | None:
        """The Stripe price of this plan, from the settings (None: not sold through Stripe)."""
        return {
            "starter": settings.stripe_price_starter,
            "pro": settings.stripe_price_pro,
            "enterprise": settings.stripe_price_enterprise,
        }.get(self.key)

    def allowed_models(self, settings: Settings) -> list[str]:
        if self.models is None:
            return list(settings.chat_allowed_models)
        return [model for model in settings.chat_allowed_models if model in self.models]

    def upload_limit_mb(self, settings: Settings) -> int:
        return min(self.max_upload_mb, settings.max_upload_mb)


PLANS: dict[str, Plan] = {
    plan.key: plan
    for plan in (
        Plan(
            key="free",
            name="Free",
            price_cents=0,
            messages_per_month=100,
            projects=3,
            documents=50,
            storage_mb=100,
            max_upload_mb=10,
            artifact_versions=10,
            models=("claude-sonnet-4-5", "claude-haiku-4-5"),
        ),
        Plan(
            key="starter",
            name="Starter",
            price_cents=4900,
            messages_per_month=2000,
            projects=10,
            documents=1000,
            storage_mb=2048,
            max_upload_mb=25,
            artifact_versions=50,
            models=("claude-sonnet-4-5", "claude-haiku-4-5"),
        ),
        Plan(
            key="pro",
            name="Pro",
            price_cents=14900,
            messages_per_month=10000,
            projects=50,
            documents=10000,
            storage_mb=20480,
            max_upload_mb=100,
            artifact_versions=200,
            models=None,
        ),
        Plan(
            key="enterprise",
            name="Enterprise",
            price_cents=49900,
            messages_per_month=50000,
            projects=None,
            documents=None,
            storage_mb=102400,
            max_upload_mb=250,
            artifact_versions=500,
            models=None,
        ),
    )
}

# The order of plans from smallest to largest (what "upgrade" means).
PLAN_ORDER: tuple[str, ...] = tuple(PLANS)


def get_plan(key: str) -> Plan:
    """The plan named ``key``; KeyError for an unknown name (callers answer 4xx)."""
    return PLANS[key]


def plan_for_price(settings: Settings, price_id: str | None) -> Plan | None:
    """The plan sold at Stripe price ``price_id``, or None if no plan uses it."""
    if price_id is None:
        return None
    for plan in PLANS.values():
        if plan.price_id(settings) == price_id:
            return plan
    return None

"""/api/billing: plans, Stripe checkout and portal, plan changes, invoices, webhooks.

Errors come from the services as domain errors and are answered by the handlers in
``app.api.billing_errors``: 422 unknown or unsellable plan, 409 a request that does
not fit the subscription (checkout for the plan one has, cancel without one), 402 a
declined card, 502/503 Stripe failing, 503 billing not configured, 400 a webhook
that is not Stripe's.
"""

from __future__ import annotations

from fastapi import APIRouter, Header, Request

from app.api.deps import CurrentUser, SessionDep, SettingsDep
from app.core import metrics
from app.core.plans import PLANS
from app.schemas.billing import (
    BillingErrorRead,
    ChangePlanRequest,
    CheckoutRequest,
    InvoiceRead,
    PlanRead,
    RedirectRead,
    SubscriptionRead,
    WebhookResult,
    plan_limits,
    subscription_read,
)
from app.services import billing, usage

router = APIRouter(prefix="/billing", tags=["billing"])

_STRIPE_FAILED: dict[int | str, dict[str, object]] = {
    402: {"model": BillingErrorRead, "description": "The card was declined; nothing changed"},
    502: {"model": BillingErrorRead, "description": "Stripe rejected the request"},
    503: {
        "model": BillingErrorRead,
        "description": "Stripe unreachable (kind `unavailable`: retry later), or billing "
        "not enabled on this server (kind `config`, not retryable)",
    },
}
_PLAN_ERRORS = {
    409: {"description": "Not possible in the current subscription state (see detail)"},
    422: {"description": "Unknown plan, or a plan not sold through checkout"},
}


@router.get("/plans", response_model=list[PlanRead])
async def list_plans(settings: SettingsDep) -> list[PlanRead]:
    """Every plan with its price and limits (no login needed: the pricing page)."""
    selling = settings.stripe_secret_key is not None
    return [
        PlanRead(
            key=plan.key,
            name=plan.name,
            price_cents=plan.price_cents,
            purchasable=selling and plan.price_id(settings) is not None,
            contact_url=settings.enterprise_contact_url
            if plan.key == "enterprise" and plan.price_id(settings) is None
            else None,
            limits=plan_limits(plan, settings),
        )
        for plan in PLANS.values()
    ]


@router.post(
    "/checkout-session",
    response_model=RedirectRead,
    responses={**_PLAN_ERRORS, **_STRIPE_FAILED},
)
async def create_checkout_session(
    body: CheckoutRequest, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> RedirectRead:
    """A Stripe Checkout page for a subscription to `plan`: send the browser to `url`.

    Stripe sends it back to PUBLIC_URL/checkout/success?session_id=... (the plan
    changes when Stripe's webhook arrives, usually within seconds) or /checkout/cancel.
    """
    redirect = await billing.create_checkout_session(session, settings, user, body.plan)
    return RedirectRead(id=redirect.id, url=redirect.url)


@router.get("/subscription", response_model=SubscriptionRead)
async def get_subscription(
    user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> SubscriptionRead:
    """The plan in force, its status and the renewal or cancellation date."""
    return subscription_read(await usage.plan_state(session, user.id, settings))


@router.post(
    "/change-plan",
    response_model=SubscriptionRead,
    responses={**_PLAN_ERRORS, **_STRIPE_FAILED},
)
async def change_plan(
    body: ChangePlanRequest, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> SubscriptionRead:
    """Upgrade or downgrade a paid subscription (Stripe prorates: an upgrade is invoiced
    now, a downgrade is credited on the next invoice). Changing to the free plan cancels
    at the end of the period; choosing the current plan again after a cancel resumes it.
    Existing projects and documents are kept after a downgrade; only new ones are
    refused above the new limits."""
    await billing.change_plan(session, settings, user, body.plan)
    return subscription_read(await usage.plan_state(session, user.id, settings))


@router.post(
    "/cancel",
    response_model=SubscriptionRead,
    responses={409: {"description": "No subscription to cancel"}, **_STRIPE_FAILED},
)
async def cancel(user: CurrentUser, session: SessionDep, settings: SettingsDep) -> SubscriptionRead:
    """Cancel at the end of the paid period; the plan stays until then."""
    await billing.cancel_subscription(session, settings, user)
    return subscription_read(await usage.plan_state(session, user.id, settings))


@router.post(
    "/portal-session",
    response_model=RedirectRead,
    responses={409: {"description": "No billing account yet"}, **_STRIPE_FAILED},
)
async def create_portal_session(
    user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> RedirectRead:
    """Stripe's customer portal (card, invoices, cancel): send the browser to `url`."""
    redirect = await billing.create_portal_session(session, settings, user)
    return RedirectRead(id=redirect.id, url=redirect.url)


@router.get("/invoices", response_model=list[InvoiceRead], responses=_STRIPE_FAILED)
async def list_invoices(
    user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> list[InvoiceRead]:
    """Billing history, newest first (the last 24 invoices)."""
    return await billing.list_invoices(session, settings, user)


@router.post(
    "/webhook",
    response_model=WebhookResult,
    responses={
        400: {"description": "Not signed by Stripe, signed too long ago, or not an event"},
        500: {"description": "Processing failed; Stripe delivers the event again later"},
        503: {"description": "Billing or webhooks not configured"},
    },
)
async def webhook(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    stripe_signature: str | None = Header(default=None),
) -> WebhookResult:
    """Stripe's events. Each event id is processed once (a redelivery answers 200 and
    changes nothing); the subscription is read afresh from Stripe, so late or repeated
    events cannot leave an older state behind."""
    payload = await request.body()  # the raw bytes: the signature covers them exactly
    try:
        event = billing.verify_event(settings, payload, stripe_signature)
    except Exception:
        metrics.count_webhook_event("", "invalid")
        raise
    try:
        outcome = await billing.handle_event(session, settings, event)
    except Exception:
        metrics.count_webhook_event(str(event.get("type", "")), "error")
        await session.rollback()
        raise
    metrics.count_webhook_event(str(event.get("type", "")), outcome)
    return WebhookResult(outcome=outcome)

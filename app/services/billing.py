"""Billing through Stripe: customers, checkout, plan changes, cancel, invoices, webhooks.

Stripe owns the truth about subscriptions. The app keeps a copy (``Subscription``
rows) that is only ever written from a subscription object Stripe just returned,
whole, whether the occasion was a webhook or the app's own call; so events that
arrive twice or out of order cannot leave an older state behind (each webhook reads
the subscription afresh from the API instead of trusting the event's snapshot).

Every Stripe failure becomes a ``BillingError`` with a sentence a person can act on
and whether retrying makes sense; the local copy is only written after Stripe said
yes, so a failed call leaves nothing half-done.

The ``stripe`` SDK is imported by the functions that call it (or ``import_stripe_sdk``
in the background at start-up), not with this module: it takes seconds to import on a
loaded host, and a colour that starts (a rollback) should serve sooner.
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.plans import PLANS, Plan, plan_for_price
from app.models.billing import BillingCustomer, Subscription
from app.models.user import User
from app.schemas.billing import InvoiceRead
from app.services import usage

if TYPE_CHECKING:
    import stripe

logger = logging.getLogger(__name__)

HANDLED_EVENTS = frozenset(
    {
        "checkout.session.completed",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.paid",
        "invoice.payment_failed",
    }
)

# A transaction-scoped lock per Stripe subscription id (see lock_subscription).
_LOCK_SUBSCRIPTION = text("SELECT pg_advisory_xact_lock(hashtext(:id))")


# --- errors ----------------------------------------------------------------------------------
class BillingNotConfigured(Exception):
    """STRIPE_SECRET_KEY (or, for webhooks, STRIPE_WEBHOOK_SECRET) is not set."""


class PlanNotAvailable(ValueError):
    """An unknown plan, or one that cannot be bought through checkout (answered 422)."""


class BillingConflict(Exception):
    """The request does not fit the account's billing state (answered 409)."""


class WebhookRejected(ValueError):
    """A webhook that is not signed by Stripe, too old, or not an event (answered 400)."""


class BillingError(Exception):
    """Stripe failed or refused. ``kind``: card_declined, unavailable, rejected, config."""

    def __init__(
        self, message: str, *, kind: str, retryable: bool, not_found: bool = False
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.retryable = retryable
        #: Stripe answered 404: the object named does not exist (there).
        self.not_found = not_found


def map_stripe_error(error: stripe.StripeError) -> BillingError:
    """A Stripe SDK exception as a BillingError people can act on."""
    import stripe

    if isinstance(error, stripe.CardError):
        return BillingError(
            f"Your card was declined ({error.user_message or error.code or 'no reason given'}). "
            "Nothing was changed; update the card in the billing portal and try again.",
            kind="card_declined",
            retryable=False,
        )
    if isinstance(error, stripe.AuthenticationError | stripe.PermissionError):
        logger.error("Stripe refused the API key: %s", error)
        return BillingError(
            "Billing is misconfigured on this server (Stripe refused its key); the "
            "administrator has been told.",
            kind="config",
            retryable=False,
        )
    if isinstance(error, stripe.RateLimitError | stripe.APIConnectionError):
        return BillingError(
            "Stripe could not be reached or is busy; nothing was changed. Try again in a minute.",
            kind="unavailable",
            retryable=True,
        )
    if isinstance(error, stripe.InvalidRequestError):
        logger.error("Stripe rejected a request: %s", error)
        return BillingError(
            f"Stripe rejected the request: {error.user_message or error}. Nothing was changed.",
            kind="rejected",
            retryable=False,
            not_found=error.http_status == 404,
        )
    return BillingError(
        "Stripe had an internal error; nothing was changed. Try again in a minute.",
        kind="unavailable",
        retryable=True,
    )


# --- the client ------------------------------------------------------------------------------
def import_stripe_sdk(settings: Settings) -> None:
    """Import the Stripe SDK now if billing is on (a background thread at start-up), so the
    first billing call or webhook does not wait for it on the event loop."""
    if settings.stripe_secret_key is not None:
        import stripe  # noqa: F401


@functools.cache
def _client(
    api_key: str, api_base: str | None, timeout: float, retries: int
) -> stripe.StripeClient:
    import stripe

    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base} if api_base else None,
        # httpx: the SDK's async requests (the default client is synchronous requests).
        http_client=stripe.HTTPXClient(timeout=timeout),
        max_network_retries=retries,
    )


def stripe_client(settings: Settings) -> stripe.StripeClient:
    """The Stripe client of these settings (one per configuration, reused)."""
    if settings.stripe_secret_key is None:
        raise BillingNotConfigured("Billing is not enabled on this server.")
    return _client(
        settings.stripe_secret_key.get_secret_value(),
        settings.stripe_api_base,
        settings.stripe_timeout_seconds,
        settings.stripe_max_network_retries,
    )


async def _call(coroutine: Any) -> dict[str, Any]:
    """Await a Stripe SDK call: its object as a plain dict, its failures as BillingError."""
    import stripe

    try:
        return (await coroutine).to_dict()
    except stripe.StripeError as error:
        raise map_stripe_error(error) from error


# --- plans -----------------------------------------------------------------------------------
def purchasable_plan(settings: Settings, key: str) -> Plan:
    """The plan named ``key`` if it can be bought through Stripe, else PlanNotAvailable."""
    plan = PLANS.get(key)
    if plan is None:
        raise PlanNotAvailable(f"There is no plan '{key}'; the plans are: {', '.join(PLANS)}.")
    if plan.price_id(settings) is None:
        if plan.key == "enterprise":
            raise PlanNotAvailable(
                f"The Enterprise plan is sold on request: {settings.enterprise_contact_url}"
            )
        if plan.price_cents == 0:
            raise PlanNotAvailable(f"The {plan.name} plan is free: no checkout needed.")
        raise PlanNotAvailable(f"The {plan.name} plan is not for sale on this server.")
    return plan


# --- customers -------------------------------------------------------------------------------
async def ensure_customer(session: AsyncSession, settings: Settings, user: User) -> str:
    """The user's Stripe customer id, creating the customer the first time (committed).

    The account lock keeps two concurrent requests from making two customers; the
    idempotency key does the same for a retry after a lost answer.
    """
    await usage.lock_account(session, user.id)
    existing = await session.get(BillingCustomer, user.id)
    if existing is not None:
        return existing.stripe_customer_id
    customer = await _call(
        stripe_client(settings).v1.customers.create_async(
            params={"email": user.email, "metadata": {"user_id": str(user.id)}},
            options={"idempotency_key": f"knowledgetree-customer-{user.id}"},
        )
    )
    session.add(BillingCustomer(user_id=user.id, stripe_customer_id=customer["id"]))
    await session.commit()
    return customer["id"]


# --- checkout, plan changes, cancel, portal, invoices ----------------------------------------
@dataclass(frozen=True)
class RedirectSession:
    id: str
    url: str


async def create_checkout_session(
    session: AsyncSession, settings: Settings, user: User, plan_key: str
) -> RedirectSession:
    """A Stripe Checkout page that starts a subscription to ``plan_key``."""
    stripe_client(settings)  # BillingNotConfigured first: no plan is for sale then
    plan = purchasable_plan(settings, plan_key)
    state = await usage.plan_state(session, user.id, settings)
    if state.subscription is not None:
        if state.plan.key == plan.key:
            raise BillingConflict(f"You are already on the {plan.name} plan.")
        raise BillingConflict(
            f"You already have a {state.plan.name} subscription: change it with "
            "POST /api/billing/change-plan (Stripe prorates the difference) instead of "
            "starting a second one."
        )
    customer_id = await ensure_customer(session, settings, user)
    metadata = {"user_id": str(user.id), "plan": plan.key}
    checkout = await _call(
        stripe_client(settings).v1.checkout.sessions.create_async(
            params={
                "mode": "subscription",
                "customer": customer_id,
                "client_reference_id": str(user.id),
                "line_items": [{"price": plan.price_id(settings), "quantity": 1}],
                "success_url": f"{settings.public_url}/checkout/success"
                "?session_id={CHECKOUT_SESSION_ID}",
                "cancel_url": f"{settings.public_url}/checkout/cancel",
                "metadata": metadata,
                "subscription_data": {"metadata": metadata},
            }
        )
    )
    return RedirectSession(id=checkout["id"], url=checkout["url"])


async def create_portal_session(
    session: AsyncSession, settings: Settings, user: User
) -> RedirectSession:
    """Stripe's customer portal (card, invoices, cancel) for the user."""
    customer = await session.get(BillingCustomer, user.id)
    if customer is None:
        raise BillingConflict("You have no billing account yet: subscribe to a plan first.")
    portal = await _call(
        stripe_client(settings).v1.billing_portal.sessions.create_async(
            params={
                "customer": customer.stripe_customer_id,
                "return_url": f"{settings.public_url}/account",
            }
        )
    )
    return RedirectSession(id=portal["id"], url=portal["url"])


async def lock_subscription(session: AsyncSession, subscription_id: str) -> None:
    """Serialise everything that reads a subscription from Stripe and writes it here, until
    the transaction ends: whoever reads later also writes later, so the copy ends up with
    Stripe's latest state even when two webhooks (or a webhook and a plan change) race."""
    await session.execute(_LOCK_SUBSCRIPTION, {"id": subscription_id})


async def _live_subscription_or_conflict(
    session: AsyncSession, user: User, action: str
) -> Subscription:
    subscription = await usage.live_subscription(session, user.id)
    if subscription is None:
        raise BillingConflict(f"You have no paid subscription to {action}.")
    await lock_subscription(session, subscription.id)
    return subscription


async def change_plan(
    session: AsyncSession, settings: Settings, user: User, plan_key: str
) -> Subscription:
    """Move the subscription to another paid plan (prorated by Stripe), or to the
    default plan by cancelling at the end of the period."""
    stripe_client(settings)  # BillingNotConfigured first: no plan is for sale then
    if plan_key == settings.default_plan:
        return await cancel_subscription(session, settings, user)
    plan = purchasable_plan(settings, plan_key)
    subscription = await _live_subscription_or_conflict(session, user, "change")
    if subscription.plan == plan.key and not subscription.cancel_at_period_end:
        raise BillingConflict(f"You are already on the {plan.name} plan.")
    client = stripe_client(settings)
    remote = await _call(client.v1.subscriptions.retrieve_async(subscription.id))
    item_id = remote["items"]["data"][0]["id"]
    upgrade = subscription.plan is None or (
        list(PLANS).index(plan.key) > list(PLANS).index(subscription.plan)
    )
    updated = await _call(
        client.v1.subscriptions.update_async(
            subscription.id,
            params={
                "items": [{"id": item_id, "price": plan.price_id(settings)}],
                # An upgrade is invoiced (and charged) now; a downgrade becomes a credit
                # on the next invoice. A declined card changes nothing.
                "proration_behavior": "always_invoice" if upgrade else "create_prorations",
                "payment_behavior": "error_if_incomplete",
                "cancel_at_period_end": False,
                "metadata": {"user_id": str(user.id), "plan": plan.key},
            },
        )
    )
    return await _store_subscription(session, settings, updated, user_id=user.id)


async def cancel_subscription(
    session: AsyncSession, settings: Settings, user: User
) -> Subscription:
    """Cancel at the end of the paid period (the plan stays until then)."""
    subscription = await _live_subscription_or_conflict(session, user, "cancel")
    if subscription.cancel_at_period_end:
        raise BillingConflict("Your subscription is already cancelled at the end of the period.")
    updated = await _call(
        stripe_client(settings).v1.subscriptions.update_async(
            subscription.id, params={"cancel_at_period_end": True}
        )
    )
    return await _store_subscription(session, settings, updated, user_id=user.id)


async def list_invoices(session: AsyncSession, settings: Settings, user: User) -> list[InvoiceRead]:
    """The user's invoices, newest first (none before their first checkout)."""
    customer = await session.get(BillingCustomer, user.id)
    if customer is None:
        return []
    page = await _call(
        stripe_client(settings).v1.invoices.list_async(
            params={"customer": customer.stripe_customer_id, "limit": 24}
        )
    )
    return [
        InvoiceRead(
            id=invoice["id"],
            number=invoice.get("number"),
            status=invoice.get("status"),
            currency=invoice["currency"],
            amount_due=invoice["amount_due"],
            amount_paid=invoice["amount_paid"],
            created=_time(invoice["created"]),
            period_start=_time(invoice.get("period_start")),
            period_end=_time(invoice.get("period_end")),
            hosted_invoice_url=invoice.get("hosted_invoice_url"),
            invoice_pdf=invoice.get("invoice_pdf"),
        )
        for invoice in page["data"]
    ]


# --- the local copy of a subscription --------------------------------------------------------
def _time(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


async def _owner_of(
    session: AsyncSession, remote: dict[str, Any], user_id: uuid.UUID | None
) -> uuid.UUID | None:
    """Whose subscription this is: known already, by customer, or by our metadata."""
    known = await session.scalar(
        select(Subscription.user_id).where(Subscription.id == remote["id"])
    )
    if known is not None:
        return known
    by_customer = await session.scalar(
        select(BillingCustomer.user_id).where(
            BillingCustomer.stripe_customer_id == remote.get("customer")
        )
    )
    if by_customer is not None:
        return by_customer
    if user_id is not None:
        return user_id
    metadata_user = (remote.get("metadata") or {}).get("user_id")
    try:
        return uuid.UUID(metadata_user) if metadata_user else None
    except ValueError:
        return None


async def _store_subscription(
    session: AsyncSession,
    settings: Settings,
    remote: dict[str, Any],
    *,
    user_id: uuid.UUID | None = None,
) -> Subscription:
    """Write Stripe's subscription object over the local copy (committed)."""
    owner = await _owner_of(session, remote, user_id)
    if owner is None or await session.get(User, owner) is None:
        raise LookupError(f"subscription {remote['id']} belongs to no account here")
    items = (remote.get("items") or {}).get("data") or []
    item = items[0] if items else {}
    price_id = (item.get("price") or {}).get("id")
    plan = plan_for_price(settings, price_id)
    if plan is None:
        logger.error("subscription %s has price %s, which no plan uses", remote["id"], price_id)
    # Since Stripe API 2025-03-31 the period lives on the subscription item.
    period_source = item if item.get("current_period_start") else remote
    values = {
        "user_id": owner,
        "plan": plan.key if plan else None,
        "price_id": price_id,
        "status": remote["status"],
        "current_period_start": _time(period_source.get("current_period_start")),
        "current_period_end": _time(period_source.get("current_period_end")),
        "cancel_at_period_end": bool(remote.get("cancel_at_period_end")),
        "canceled_at": _time(remote.get("canceled_at")),
        "stripe_created_at": _time(remote["created"]),
    }
    subscription = await session.get(Subscription, remote["id"], with_for_update=True)
    if subscription is None:
        subscription = Subscription(id=remote["id"], **values)
        session.add(subscription)
    else:
        for name, value in values.items():
            setattr(subscription, name, value)
    if remote.get("customer"):
        await session.execute(
            pg_insert(BillingCustomer)
            .values(user_id=owner, stripe_customer_id=remote["customer"])
            .on_conflict_do_nothing()
        )
    await session.commit()
    return subscription


# --- webhooks --------------------------------------------------------------------------------
def verify_event(settings: Settings, payload: bytes, signature: str | None) -> dict[str, Any]:
    """The event in ``payload`` if ``signature`` is Stripe's for it, else WebhookRejected.

    The signature (HMAC-SHA256 of "timestamp.body" with the endpoint's secret) is checked
    by the SDK over the raw bytes, and so is its age (STRIPE_WEBHOOK_TOLERANCE_SECONDS).
    """
    import stripe

    stripe_client(settings)
    if settings.stripe_webhook_secret is None:
        raise BillingNotConfigured("Stripe webhooks are not configured on this server.")
    try:
        stripe.WebhookSignature.verify_header(
            payload,
            signature,
            settings.stripe_webhook_secret.get_secret_value(),
            tolerance=settings.stripe_webhook_tolerance_seconds,
        )
    except stripe.SignatureVerificationError as error:
        raise WebhookRejected(f"Bad Stripe-Signature: {error.user_message or error}") from None
    try:
        event = json.loads(payload)
    except ValueError:
        raise WebhookRejected("The body is not JSON.") from None
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
        or not isinstance(event.get("data"), dict)
        or not isinstance(event["data"].get("object"), dict)
    ):
        raise WebhookRejected("The body is not a Stripe event (id, type, data.object).")
    return event


_RECORD_EVENT = text(
    "INSERT INTO stripe_events (id, type) VALUES (:id, :type) "
    "ON CONFLICT (id) DO NOTHING RETURNING id"
)


def _subscription_of(event: dict[str, Any]) -> str | None:
    """The id of the subscription an event is about, if any."""
    obj = event["data"]["object"]
    if event["type"].startswith("customer.subscription."):
        return obj.get("id")
    if event["type"] == "checkout.session.completed":
        return obj.get("subscription")
    if event["type"].startswith("invoice."):
        # Since Stripe API 2025-03-31: invoice.parent.subscription_details.subscription.
        parent = obj.get("parent") or {}
        details = parent.get("subscription_details") or {}
        return details.get("subscription") or obj.get("subscription")
    return None


async def handle_event(session: AsyncSession, settings: Settings, event: dict[str, Any]) -> str:
    """Apply a verified event once. Returns 'processed', 'duplicate' or 'ignored'.

    The event id is stored in the same transaction as its effect: a failure (Stripe
    unreachable while re-reading the subscription) rolls both back and raises, the
    webhook answers 5xx, and Stripe delivers it again later.
    """
    event_id, event_type = event["id"], event["type"]
    recorded = await session.scalar(_RECORD_EVENT, {"id": event_id, "type": event_type})
    if recorded is None:
        await session.rollback()
        return "duplicate"
    subscription_id = _subscription_of(event) if event_type in HANDLED_EVENTS else None
    if subscription_id is None:
        await session.commit()
        return "ignored"
    user_hint = None
    if event_type == "checkout.session.completed":
        reference = event["data"]["object"].get("client_reference_id")
        try:
            user_hint = uuid.UUID(reference) if reference else None
        except ValueError:
            user_hint = None
    if event_type == "invoice.payment_failed":
        logger.warning("payment failed for subscription %s (event %s)", subscription_id, event_id)
    await lock_subscription(session, subscription_id)
    try:
        remote = await _call(
            stripe_client(settings).v1.subscriptions.retrieve_async(subscription_id)
        )
    except BillingError as error:
        if error.not_found:
            logger.warning("event %s names unknown subscription %s", event_id, subscription_id)
            await session.commit()
            return "ignored"
        raise
    try:
        await _store_subscription(session, settings, remote, user_id=user_hint)
    except LookupError as error:
        logger.warning("event %s: %s; ignored", event_id, error)
        await session.commit()
        return "ignored"
    return "processed"

"""Billing API against the real `stripe` SDK and a local stateful Stripe stand-in.

Checkout, plan changes, cancel, portal and invoices go through the SDK to the
stand-in; "the customer paid" is the stand-in's `complete_checkout`, and the app
learns it from webhook events signed with Stripe's real scheme.
"""

from __future__ import annotations

import asyncio
import json
import time

import stripe
from sqlalchemy import func, select

from app.main import create_app
from app.models.billing import BillingCustomer, StripeEvent, Subscription
from tests.app.utils.clients import app_client
from tests.fakes.stripe_server import signed_event

BILLING = "/api/billing"


async def subscribe(billing_client, stripe_fake, deliver, user, plan: str = "starter") -> str:
    """Checkout, pay, and the checkout.session.completed webhook: the subscription id."""
    response = await billing_client.post(
        f"{BILLING}/checkout-session", json={"plan": plan}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    subscription = stripe_fake.complete_checkout(response.json()["id"])
    response = await deliver(stripe_fake.event("checkout.session.completed"))
    assert response.status_code == 200, response.text
    return subscription["id"]


async def current(billing_client, user) -> dict:
    response = await billing_client.get(f"{BILLING}/subscription", headers=user.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def count(db_session, model) -> int:
    return await db_session.scalar(select(func.count()).select_from(model))


# --- plans ----------------------------------------------------------------------------------
async def test_plans_are_listed_with_prices_and_limits(billing_client):
    response = await billing_client.get(f"{BILLING}/plans")
    assert response.status_code == 200
    plans = {plan["key"]: plan for plan in response.json()}
    assert list(plans) == ["free", "starter", "pro", "enterprise"]
    assert plans["starter"]["price_cents"] == 4900 and plans["starter"]["purchasable"]
    assert plans["pro"]["price_cents"] == 14900 and plans["pro"]["purchasable"]
    assert not plans["free"]["purchasable"]
    enterprise = plans["enterprise"]
    assert not enterprise["purchasable"] and enterprise["contact_url"].startswith("mailto:")
    assert plans["free"]["limits"]["messages_per_month"] == 100
    assert plans["enterprise"]["limits"]["projects"] is None  # no limit


async def test_billing_without_stripe_configured_is_503_but_plans_still_list(client, user_factory):
    user = await user_factory()
    response = await client.post(
        f"{BILLING}/checkout-session", json={"plan": "starter"}, headers=user.headers
    )
    assert response.status_code == 503
    # The body the OpenAPI 503 documents (BillingErrorRead), not `detail` alone.
    assert response.json() == {
        "detail": response.json()["detail"],
        "kind": "config",
        "retryable": False,
    }
    assert "not enabled" in response.json()["detail"]
    plans = (await client.get(f"{BILLING}/plans")).json()
    assert not any(plan["purchasable"] for plan in plans)
    assert (await current(client, user))["plan"] == "free"


# --- checkout and the webhook that completes it ---------------------------------------------
async def test_checkout_then_webhook_moves_the_user_to_starter(
    billing_client, stripe_fake, deliver, user_factory, db_session, billing_settings
):
    user = await user_factory()
    assert (await current(billing_client, user))["status"] == "none"

    response = await billing_client.post(
        f"{BILLING}/checkout-session", json={"plan": "starter"}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    checkout = stripe_fake.checkout_sessions[response.json()["id"]]
    assert response.json()["url"] == checkout["url"]
    assert checkout["client_reference_id"] == str(user.id)
    assert checkout["metadata"] == {"user_id": str(user.id), "plan": "starter"}
    assert checkout["_line_items"] == [
        {"price": billing_settings.stripe_price_starter, "quantity": "1"}
    ]
    assert checkout["success_url"].startswith("https://kt.example.com/checkout/success")
    assert "{CHECKOUT_SESSION_ID}" in checkout["success_url"]
    # The customer was made once, for this user.
    assert [c["metadata"]["user_id"] for c in stripe_fake.customers.values()] == [str(user.id)]
    # Not paid yet: still free.
    assert (await current(billing_client, user))["plan"] == "free"

    subscription = stripe_fake.complete_checkout(checkout["id"])
    response = await deliver(stripe_fake.event("checkout.session.completed"))
    assert response.json() == {"received": True, "outcome": "processed"}

    state = await current(billing_client, user)
    assert state["plan"] == "starter" and state["status"] == "active"
    period_end = subscription["items"]["data"][0]["current_period_end"]
    assert state["current_period_end"].startswith(
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(period_end))
    )
    assert await count(db_session, BillingCustomer) == 1


async def test_checkout_refuses_unknown_unsellable_and_current_plans(
    billing_client, stripe_fake, deliver, user_factory
):
    user = await user_factory()

    async def checkout(plan: str):
        return await billing_client.post(
            f"{BILLING}/checkout-session", json={"plan": plan}, headers=user.headers
        )

    response = await checkout("platinum")  # not in the schema's enum of plans
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "plan"]
    assert "starter" in response.json()["detail"][0]["msg"]
    response = await checkout("free")
    assert response.status_code == 422 and "free" in response.json()["detail"]
    response = await checkout("enterprise")
    assert response.status_code == 422
    assert "mailto:" in response.json()["detail"]
    assert stripe_fake.customers == {}  # nothing was made at Stripe for refused requests

    await subscribe(billing_client, stripe_fake, deliver, user)
    response = await checkout("starter")
    assert response.status_code == 409
    assert response.json()["detail"] == "You are already on the Starter plan."
    response = await checkout("pro")
    assert response.status_code == 409 and "change-plan" in response.json()["detail"]


async def test_stripe_failures_give_a_clear_error_and_create_no_subscription(
    billing_client, stripe_fake, user_factory, db_session, billing_settings
):
    user = await user_factory()

    async def checkout():
        return await billing_client.post(
            f"{BILLING}/checkout-session", json={"plan": "starter"}, headers=user.headers
        )

    stripe_fake.fail_next("server_error", path="/v1/checkout/sessions")
    response = await checkout()
    assert response.status_code == 503
    body = response.json()
    assert body["retryable"] is True and body["kind"] == "unavailable"
    assert "nothing was changed" in body["detail"]
    assert stripe_fake.checkout_sessions == {}

    stripe_fake.hang_seconds = 20
    stripe_fake.fail_next("timeout", path="/v1/checkout/sessions")
    impatient = create_app(billing_settings.model_copy(update={"stripe_timeout_seconds": 2.0}))
    started = time.monotonic()
    async with app_client(impatient) as client:
        response = await client.post(
            f"{BILLING}/checkout-session", json={"plan": "starter"}, headers=user.headers
        )
    assert response.status_code == 503 and response.json()["retryable"] is True
    assert time.monotonic() - started < 15  # STRIPE_TIMEOUT_SECONDS (2 s), not the hang

    stripe_fake.fail_next("rate_limit")
    response = await checkout()
    assert response.status_code == 503

    # Nothing half-made: no subscription anywhere, and the one customer is reused.
    assert stripe_fake.subscriptions == {}
    assert await count(db_session, Subscription) == 0
    response = await checkout()
    assert response.status_code == 200
    assert len(stripe_fake.customers) == 1
    assert await count(db_session, BillingCustomer) == 1


async def test_a_retried_stripe_call_succeeds(billing_settings, stripe_fake, user_factory):
    """With retries allowed, a Stripe 500 is retried (with the same idempotency key)."""
    retrying = create_app(billing_settings.model_copy(update={"stripe_max_network_retries": 1}))
    user = await user_factory()
    stripe_fake.fail_next("server_error", path="/v1/customers")
    async with app_client(retrying) as client:
        response = await client.post(
            f"{BILLING}/checkout-session", json={"plan": "pro"}, headers=user.headers
        )
    assert response.status_code == 200, response.text
    posts = [r for r in stripe_fake.requests if r.path == "/v1/customers"]
    assert len(posts) == 2
    assert posts[0].headers["idempotency-key"] == posts[1].headers["idempotency-key"]
    assert len(stripe_fake.customers) == 1


# --- plan changes, cancel, portal, invoices ---------------------------------------------------
async def test_upgrade_prorates_and_a_declined_card_changes_nothing(
    billing_client, stripe_fake, deliver, user_factory
):
    user = await user_factory()
    subscription_id = await subscribe(billing_client, stripe_fake, deliver, user)

    stripe_fake.fail_next("card_declined", path=f"/v1/subscriptions/{subscription_id}")
    response = await billing_client.post(
        f"{BILLING}/change-plan", json={"plan": "pro"}, headers=user.headers
    )
    assert response.status_code == 402
    assert response.json()["kind"] == "card_declined"
    assert "declined" in response.json()["detail"]
    assert (await current(billing_client, user))["plan"] == "starter"
    price = stripe_fake.subscriptions[subscription_id]["items"]["data"][0]["price"]
    assert price["unit_amount"] == 4900

    response = await billing_client.post(
        f"{BILLING}/change-plan", json={"plan": "pro"}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["plan"] == "pro"
    update = stripe_fake.requests[-1]
    assert update.params["proration_behavior"] == "always_invoice"
    assert update.params["payment_behavior"] == "error_if_incomplete"
    invoices = (await billing_client.get(f"{BILLING}/invoices", headers=user.headers)).json()
    assert [i["amount_due"] for i in invoices] == [10000, 4900]  # the prorated difference
    assert invoices[0]["status"] == "paid" and invoices[0]["hosted_invoice_url"]

    # Back down to Starter: credited on the next invoice, not charged now.
    response = await billing_client.post(
        f"{BILLING}/change-plan", json={"plan": "starter"}, headers=user.headers
    )
    assert response.json()["plan"] == "starter"
    assert stripe_fake.requests[-1].params["proration_behavior"] == "create_prorations"
    response = await billing_client.post(
        f"{BILLING}/change-plan", json={"plan": "starter"}, headers=user.headers
    )
    assert response.status_code == 409


async def test_cancel_keeps_the_plan_until_the_period_ends(
    billing_client, stripe_fake, deliver, user_factory
):
    user = await user_factory()
    response = await billing_client.post(f"{BILLING}/cancel", headers=user.headers)
    assert response.status_code == 409
    assert "no paid subscription" in response.json()["detail"]

    subscription_id = await subscribe(billing_client, stripe_fake, deliver, user, "pro")
    response = await billing_client.post(f"{BILLING}/cancel", headers=user.headers)
    assert response.status_code == 200, response.text
    assert response.json()["plan"] == "pro" and response.json()["cancel_at_period_end"]
    assert stripe_fake.subscriptions[subscription_id]["cancel_at_period_end"] is True
    response = await billing_client.post(f"{BILLING}/cancel", headers=user.headers)
    assert response.status_code == 409

    stripe_fake.end_period(subscription_id)
    response = await deliver(stripe_fake.event("customer.subscription.deleted"))
    assert response.json()["outcome"] == "processed"
    state = await current(billing_client, user)
    assert state["plan"] == "free" and state["status"] == "none"


async def test_choosing_the_plan_again_after_cancelling_resumes_it(
    billing_client, stripe_fake, deliver, user_factory
):
    user = await user_factory()
    subscription_id = await subscribe(billing_client, stripe_fake, deliver, user, "pro")
    await billing_client.post(f"{BILLING}/cancel", headers=user.headers)
    response = await billing_client.post(
        f"{BILLING}/change-plan", json={"plan": "pro"}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["plan"] == "pro" and not response.json()["cancel_at_period_end"]
    assert stripe_fake.subscriptions[subscription_id]["cancel_at_period_end"] is False


async def test_portal_session_needs_a_billing_account(
    billing_client, stripe_fake, deliver, user_factory
):
    user = await user_factory()
    response = await billing_client.post(f"{BILLING}/portal-session", headers=user.headers)
    assert response.status_code == 409
    assert (await billing_client.get(f"{BILLING}/invoices", headers=user.headers)).json() == []

    await subscribe(billing_client, stripe_fake, deliver, user)
    response = await billing_client.post(f"{BILLING}/portal-session", headers=user.headers)
    assert response.status_code == 200
    portal = stripe_fake.portal_sessions[response.json()["id"]]
    assert portal["return_url"] == "https://kt.example.com/account"
    assert response.json()["url"] == portal["url"]


async def test_renewal_payment_failure_keeps_the_plan_while_stripe_retries(
    billing_client, stripe_fake, deliver, user_factory
):
    user = await user_factory()
    subscription_id = await subscribe(billing_client, stripe_fake, deliver, user)
    stripe_fake.fail_renewal(subscription_id)
    response = await deliver(stripe_fake.event("invoice.payment_failed"))
    assert response.json()["outcome"] == "processed"
    state = await current(billing_client, user)
    assert state["plan"] == "starter" and state["status"] == "past_due"


async def test_billing_endpoints_need_a_login(billing_client):
    for method, path in [
        ("POST", "/checkout-session"),
        ("GET", "/subscription"),
        ("POST", "/change-plan"),
        ("POST", "/cancel"),
        ("POST", "/portal-session"),
        ("GET", "/invoices"),
    ]:
        response = await billing_client.request(method, f"{BILLING}{path}", json={})
        assert response.status_code == 401, path


# --- webhooks: bad input ----------------------------------------------------------------------
async def test_bad_webhooks_are_400_and_change_nothing(
    billing_client, stripe_fake, deliver, user_factory, db_session, billing_settings
):
    secret = billing_settings.stripe_webhook_secret.get_secret_value()
    user = await user_factory()
    response = await billing_client.post(
        f"{BILLING}/checkout-session", json={"plan": "starter"}, headers=user.headers
    )
    stripe_fake.complete_checkout(response.json()["id"])
    event = stripe_fake.event("checkout.session.completed")
    body = json.dumps(event).encode()

    unsigned = await billing_client.post(f"{BILLING}/webhook", content=body)
    assert unsigned.status_code == 400
    assert "Stripe-Signature" in unsigned.json()["detail"]

    wrong = await deliver(event, secret="whsec_somebody_else")
    assert wrong.status_code == 400

    stale = await deliver(event, timestamp=int(time.time()) - 301)
    assert stale.status_code == 400
    assert "tolerance" in stale.json()["detail"].lower()

    header = signed_event(event, secret)[1]["Stripe-Signature"]
    tampered = body.replace(b'"livemode": false', b'"livemode": true')
    response = await billing_client.post(
        f"{BILLING}/webhook", content=tampered, headers={"Stripe-Signature": header}
    )
    assert response.status_code == 400

    for garbage in (b"not json at all", b'{"no": "id"}', b"[]"):
        header = stripe.WebhookSignature.generate_signature_header(garbage.decode(), secret)
        response = await billing_client.post(
            f"{BILLING}/webhook", content=garbage, headers={"Stripe-Signature": header}
        )
        assert response.status_code == 400, garbage

    garbled = await billing_client.post(
        f"{BILLING}/webhook", content=body, headers={"Stripe-Signature": "t=abc,v1=zzz"}
    )
    assert garbled.status_code == 400

    assert await count(db_session, StripeEvent) == 0
    assert await count(db_session, Subscription) == 0
    assert (await current(billing_client, user))["plan"] == "free"


async def test_webhooks_without_a_secret_configured_are_refused(
    billing_settings, stripe_fake, user_factory
):
    app = create_app(billing_settings.model_copy(update={"stripe_webhook_secret": None}))
    body, headers = signed_event({"id": "evt_1", "type": "invoice.paid"}, "whsec_any")
    async with app_client(app) as client:
        response = await client.post(f"{BILLING}/webhook", content=body, headers=headers)
    assert response.status_code == 503


# --- webhooks: replays, duplicates, order ----------------------------------------------------
async def test_a_replayed_event_is_a_200_no_op(
    billing_client, stripe_fake, deliver, user_factory, db_session
):
    user = await user_factory()
    await subscribe(billing_client, stripe_fake, deliver, user)
    event = stripe_fake.event("checkout.session.completed")
    requests_before = len(stripe_fake.requests)
    response = await deliver(event)
    assert response.status_code == 200
    assert response.json()["outcome"] == "duplicate"
    assert len(stripe_fake.requests) == requests_before  # not even a read from Stripe
    assert await count(db_session, StripeEvent) == 1


async def test_events_out_of_order_and_twice_converge_to_stripes_state(
    billing_client, stripe_fake, deliver, user_factory, billing_settings
):
    user = await user_factory()
    response = await billing_client.post(
        f"{BILLING}/checkout-session", json={"plan": "starter"}, headers=user.headers
    )
    subscription_id = stripe_fake.complete_checkout(response.json()["id"])["id"]
    created = list(stripe_fake.events)  # subscription.created, invoice.paid, checkout.completed
    # Then the customer upgrades in the billing portal (Stripe's page, not our API)...
    stripe_fake.portal_change_price(subscription_id, billing_settings.stripe_price_pro)
    updated = stripe_fake.events[-1]

    # ...and the events arrive newest first, some twice.
    for event in [updated, *reversed(created), updated, created[0]]:
        response = await deliver(event)
        assert response.status_code == 200, response.text
    assert (await current(billing_client, user))["plan"] == "pro"

    # The end of the subscription, then its (late) creation event once more.
    stripe_fake.subscriptions[subscription_id]["cancel_at_period_end"] = True
    stripe_fake.end_period(subscription_id)
    await deliver(stripe_fake.event("customer.subscription.deleted"))
    stale_copy = dict(created[0], id="evt_redelivered_late_copy")
    assert (await deliver(stale_copy)).json()["outcome"] == "processed"
    state = await current(billing_client, user)
    assert state["plan"] == "free" and state["status"] == "none"


async def test_concurrent_deliveries_end_in_stripes_state(
    billing_client, stripe_fake, deliver, user_factory, billing_settings
):
    user = await user_factory()
    response = await billing_client.post(
        f"{BILLING}/checkout-session", json={"plan": "starter"}, headers=user.headers
    )
    subscription_id = stripe_fake.complete_checkout(response.json()["id"])["id"]
    stripe_fake.portal_change_price(subscription_id, billing_settings.stripe_price_pro)
    responses = await asyncio.gather(*(deliver(event) for event in stripe_fake.events * 2))
    assert sorted(r.json()["outcome"] for r in responses) == ["duplicate"] * 4 + ["processed"] * 4
    assert (await current(billing_client, user))["plan"] == "pro"


async def test_a_webhook_that_cannot_reach_stripe_is_retried_later(
    billing_client, stripe_fake, deliver, user_factory, db_session
):
    user = await user_factory()
    response = await billing_client.post(
        f"{BILLING}/checkout-session", json={"plan": "starter"}, headers=user.headers
    )
    stripe_fake.complete_checkout(response.json()["id"])
    event = stripe_fake.event("checkout.session.completed")

    stripe_fake.fail_next("server_error", path="/v1/subscriptions/")
    response = await deliver(event)
    assert response.status_code == 503  # Stripe delivers it again later
    assert await count(db_session, StripeEvent) == 0
    assert (await current(billing_client, user))["plan"] == "free"

    response = await deliver(event)  # the redelivery
    assert response.json()["outcome"] == "processed"
    assert (await current(billing_client, user))["plan"] == "starter"


def bare_event(event_id: str, event_type: str, obj: dict) -> dict:
    """An event as Stripe sends it, about ``obj``, made here rather than by the stand-in."""
    return {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": obj},
    }


async def test_unhandled_event_types_are_acknowledged(billing_client, stripe_fake, deliver):
    event = bare_event("evt_unrelated", "customer.created", {"id": "cus_x", "object": "customer"})
    response = await deliver(event)
    assert response.status_code == 200 and response.json()["outcome"] == "ignored"


async def test_an_event_about_a_subscription_stripe_does_not_know_is_ignored(
    billing_client, deliver, db_session
):
    """Stripe answers 404 for the subscription (deleted, or another account's): the event
    is recorded and acknowledged, so Stripe stops delivering it."""
    event = bare_event(
        "evt_unknown_subscription",
        "customer.subscription.updated",
        {"id": "sub_nobody", "object": "subscription"},
    )
    response = await deliver(event)
    assert response.status_code == 200 and response.json()["outcome"] == "ignored"
    assert await count(db_session, StripeEvent) == 1

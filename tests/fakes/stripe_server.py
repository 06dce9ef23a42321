"""A local, stateful stand-in for the Stripe API (tests and benchmarks only).

It speaks the wire protocol the official `stripe` SDK uses: form-encoded request
bodies with bracketed keys (``line_items[0][price]=...``), ``Authorization: Bearer``
API keys, ``Idempotency-Key`` replays, JSON objects shaped like Stripe's (API version
2025-03-31 and later: the billing period lives on the subscription item, an invoice
names its subscription under ``parent.subscription_details``) and Stripe's error
envelope ``{"error": {"type", "code", "message", ...}}``. The app reaches it only
through ``STRIPE_API_BASE``, as it would reach https://api.stripe.com.

What it keeps: prices (made by the test, so no price id is hard-coded anywhere),
customers, checkout sessions, subscriptions, invoices, billing portal sessions.
What Stripe would do on its own pages and clock, a test does with a call:
``complete_checkout`` (the customer paid on the Checkout page), ``portal_change_price``
(a plan change in the billing portal), ``end_period``
(renewal, or the end of a subscription cancelled at period end) and
``fail_renewal`` (the card is declined at renewal). Each of these, and every change
made through the API, appends the events Stripe would send to ``events``; a test
delivers them to the app signed with the real scheme (``signed_event``), in any
order, as often as it likes.

Faults: ``fail_next("card_declined" | "server_error" | "rate_limit" | "timeout")``
makes the next matching request(s) fail the way Stripe does (402 card_error, 500
api_error, 429 rate_limit_error, or no answer for ``hang_seconds``).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import stripe

Failure = Literal["card_declined", "server_error", "rate_limit", "timeout"]
MONTH = 30 * 24 * 3600


class StripeFailure(Exception):
    """An error answer in Stripe's envelope."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.status = status
        self.error = error


def _missing(kind: str, object_id: str, param: str = "id") -> StripeFailure:
    return StripeFailure(
        404 if param == "id" else 400,
        {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "param": param,
            "message": f"No such {kind}: '{object_id}'",
        },
    )


_FAILURES: dict[str, tuple[int, dict[str, Any]]] = {
    "card_declined": (
        402,
        {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "generic_decline",
            "message": "Your card was declined.",
        },
    ),
    "server_error": (500, {"type": "api_error", "message": "An unknown error occurred"}),
    "rate_limit": (
        429,
        {
            "type": "invalid_request_error",
            "code": "rate_limit",
            "message": "Too many requests hit the API too quickly.",
        },
    ),
}


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding (``a[b][0][c]=v``) as nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node: Any = root
        for part, following in itertools.pairwise(parts):
            default: Any = [] if following.isdigit() else {}
            if isinstance(node, list):
                index = int(part)
                while len(node) <= index:
                    node.append(copy.copy(default))
                node = node[index]
            else:
                node = node.setdefault(part, default)
        last = parts[-1]
        if isinstance(node, list):
            index = int(last)
            while len(node) <= index:
                node.append(None)
            node[index] = value
        else:
            node[last] = value
    return root


def _truthy(value: Any) -> bool:
    return str(value).lower() == "true"


@dataclass
class Recorded:
    method: str
    path: str
    params: dict[str, Any]
    headers: dict[str, str]


class FakeStripeServer:
    """Start with `start()` or as a context manager; `base_url` goes into STRIPE_API_BASE."""

    def __init__(self, api_key: str = "sk_test_standin") -> None:
        self.api_key = api_key
        self.hang_seconds = 5.0
        self._lock = threading.RLock()
        self._failures: deque[tuple[Failure, str | None]] = deque()
        self.reset()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                pairs = parse_qsl(url.query, keep_blank_values=True) + parse_qsl(
                    body, keep_blank_values=True
                )
                status, payload = stand_in._dispatch(
                    self.command, url.path, decode_form(pairs), dict(self.headers)
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", f"req_{uuid.uuid4().hex[:14]}")
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _handle

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-stripe", daemon=True
        )
        self._stopping = threading.Event()

    # --- state -----------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self.prices: dict[str, dict[str, Any]] = {}
            self.customers: dict[str, dict[str, Any]] = {}
            self.checkout_sessions: dict[str, dict[str, Any]] = {}
            self.subscriptions: dict[str, dict[str, Any]] = {}
            self.invoices: dict[str, dict[str, Any]] = {}
            self.portal_sessions: dict[str, dict[str, Any]] = {}
            self.events: list[dict[str, Any]] = []
            self.requests: list[Recorded] = []
            self._idempotent: dict[str, tuple[int, dict[str, Any]]] = {}
            self._failures.clear()

    def fail_next(self, failure: Failure, *, times: int = 1, path: str | None = None) -> None:
        """The next ``times`` requests (whose path starts with ``path``, if given) fail."""
        with self._lock:
            self._failures.extend([(failure, path)] * times)

    def create_price(self, unit_amount: int, nickname: str = "") -> str:
        price_id = f"price_{uuid.uuid4().hex[:14]}"
        with self._lock:
            self.prices[price_id] = {
                "id": price_id,
                "object": "price",
                "active": True,
                "currency": "usd",
                "unit_amount": unit_amount,
                "nickname": nickname,
                "recurring": {"interval": "month", "interval_count": 1},
                "type": "recurring",
            }
        return price_id

    # --- lifecycle -------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeStripeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # release hanging handlers
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeStripeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what Stripe does on its own pages and clock ---------------------------------
    def complete_checkout(self, session_id: str) -> dict[str, Any]:
        """The customer paid on the Checkout page: the subscription starts, the first
        invoice is paid. Returns the subscription."""
        with self._lock:
            checkout = self.checkout_sessions[session_id]
            item = checkout["_line_items"][0]
            subscription = self._new_subscription(
                checkout["customer"], item["price"], checkout.get("_subscription_metadata", {})
            )
            invoice = self._new_invoice(subscription, self.prices[item["price"]]["unit_amount"])
            checkout.update(status="complete", payment_status="paid")
            checkout["subscription"] = subscription["id"]
            self._emit("customer.subscription.created", subscription)
            self._emit("invoice.paid", invoice)
            self._emit("checkout.session.completed", self._public(checkout))
            return copy.deepcopy(subscription)

    def end_period(self, subscription_id: str) -> dict[str, Any]:
        """The period ends: a subscription cancelled at period end ends; any other
        renews for a month with a paid invoice. Returns the subscription."""
        with self._lock:
            subscription = self.subscriptions[subscription_id]
            if subscription["cancel_at_period_end"]:
                subscription.update(
                    status="canceled", ended_at=int(time.time()), canceled_at=int(time.time())
                )
                self._emit("customer.subscription.deleted", subscription)
            else:
                self._advance(subscription)
                amount = subscription["items"]["data"][0]["price"]["unit_amount"]
                invoice = self._new_invoice(subscription, amount)
                self._emit("customer.subscription.updated", subscription)
                self._emit("invoice.paid", invoice)
            return copy.deepcopy(subscription)

    def portal_change_price(self, subscription_id: str, price_id: str) -> dict[str, Any]:
        """The customer switched plans in the billing portal (not through the app)."""
        with self._lock:
            subscription = self.subscriptions[subscription_id]
            subscription["items"]["data"][0]["price"] = copy.deepcopy(self.prices[price_id])
            self._emit("customer.subscription.updated", subscription)
            return copy.deepcopy(subscription)

    def fail_renewal(self, subscription_id: str) -> dict[str, Any]:
        """The card is declined at renewal: the subscription becomes past_due."""
        with self._lock:
            subscription = self.subscriptions[subscription_id]
            self._advance(subscription)
            amount = subscription["items"]["data"][0]["price"]["unit_amount"]
            invoice = self._new_invoice(subscription, amount, paid=False)
            subscription["status"] = "past_due"
            self._emit("customer.subscription.updated", subscription)
            self._emit("invoice.payment_failed", invoice)
            return copy.deepcopy(subscription)

    def event(self, event_type: str) -> dict[str, Any]:
        """The last event of ``event_type`` Stripe would have sent."""
        with self._lock:
            return next(e for e in reversed(self.events) if e["type"] == event_type)

    # --- the API ---------------------------------------------------------------------
    def _dispatch(
        self, method: str, path: str, params: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        headers = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            self.requests.append(Recorded(method, path, params, headers))
            failure = self._take_failure(path)
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {
                "error": {
                    "type": "invalid_request_error",
                    "message": "Invalid API Key provided.",
                }
            }
        if failure == "timeout":
            self._stopping.wait(self.hang_seconds)
            return 500, {"error": {"type": "api_error", "message": "stand-in hang ended"}}
        if failure is not None:
            status, error = _FAILURES[failure]
            return status, {"error": dict(error)}
        key = headers.get("idempotency-key") if method == "POST" else None
        with self._lock:
            if key and key in self._idempotent:
                return self._idempotent[key]
            try:
                answer = 200, self._route(method, path, params)
            except StripeFailure as error:
                answer = error.status, {"error": error.error}
            if key:
                self._idempotent[key] = answer
            return answer

    def _take_failure(self, path: str) -> Failure | None:
        for index, (failure, prefix) in enumerate(self._failures):
            if prefix is None or path.startswith(prefix):
                del self._failures[index]
                return failure
        return None

    def _route(self, method: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        routes = [
            ("POST", r"/v1/customers", self._create_customer),
            ("GET", r"/v1/customers/(?P<id>[^/]+)", self._get_customer),
            ("POST", r"/v1/checkout/sessions", self._create_checkout_session),
            ("GET", r"/v1/checkout/sessions/(?P<id>[^/]+)", self._get_checkout_session),
            ("GET", r"/v1/subscriptions/(?P<id>[^/]+)", self._get_subscription),
            ("POST", r"/v1/subscriptions/(?P<id>[^/]+)", self._update_subscription),
            ("DELETE", r"/v1/subscriptions/(?P<id>[^/]+)", self._cancel_subscription),
            ("GET", r"/v1/invoices", self._list_invoices),
            ("POST", r"/v1/billing_portal/sessions", self._create_portal_session),
        ]
        for route_method, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if match and method == route_method:
                return copy.deepcopy(handler(params, **match.groupdict()))
        raise StripeFailure(
            404,
            {
                "type": "invalid_request_error",
                "message": f"Unrecognized request URL ({method}: {path}).",
            },
        )

    def _create_customer(self, params: dict[str, Any]) -> dict[str, Any]:
        customer = {
            "id": f"cus_{uuid.uuid4().hex[:14]}",
            "object": "customer",
            "created": int(time.time()),
            "email": params.get("email"),
            "metadata": params.get("metadata", {}),
            "livemode": False,
        }
        self.customers[customer["id"]] = customer
        return customer

    def _get_customer(self, params: dict[str, Any], id: str) -> dict[str, Any]:
        if id not in self.customers:
            raise _missing("customer", id)
        return self.customers[id]

    def _create_checkout_session(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("mode") != "subscription":
            raise StripeFailure(
                400,
                {
                    "type": "invalid_request_error",
                    "param": "mode",
                    "message": "The stand-in only knows mode=subscription.",
                },
            )
        customer = params.get("customer")
        if customer not in self.customers:
            raise _missing("customer", str(customer), param="customer")
        line_items = params.get("line_items") or []
        if not line_items:
            raise StripeFailure(
                400,
                {
                    "type": "invalid_request_error",
                    "param": "line_items",
                    "message": "line_items is required in subscription mode.",
                },
            )
        for item in line_items:
            if item.get("price") not in self.prices:
                raise _missing("price", str(item.get("price")), param="line_items[0][price]")
        for required in ("success_url", "cancel_url"):
            if not params.get(required):
                raise StripeFailure(
                    400,
                    {
                        "type": "invalid_request_error",
                        "param": required,
                        "message": f"Missing required param: {required}.",
                    },
                )
        session_id = f"cs_test_{uuid.uuid4().hex[:24]}"
        checkout = {
            "id": session_id,
            "object": "checkout.session",
            "mode": "subscription",
            "status": "open",
            "payment_status": "unpaid",
            "customer": customer,
            "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata", {}),
            "success_url": params["success_url"],
            "cancel_url": params["cancel_url"],
            "subscription": None,
            "url": f"{self.base_url}/checkout/pay/{session_id}",
            "created": int(time.time()),
            "_line_items": line_items,
            "_subscription_metadata": (params.get("subscription_data") or {}).get("metadata", {}),
        }
        self.checkout_sessions[session_id] = checkout
        return self._public(checkout)

    def _get_checkout_session(self, params: dict[str, Any], id: str) -> dict[str, Any]:
        if id not in self.checkout_sessions:
            raise _missing("checkout.session", id)
        return self._public(self.checkout_sessions[id])

    def _get_subscription(self, params: dict[str, Any], id: str) -> dict[str, Any]:
        if id not in self.subscriptions:
            raise _missing("subscription", id)
        return self.subscriptions[id]

    def _update_subscription(self, params: dict[str, Any], id: str) -> dict[str, Any]:
        subscription = self._get_subscription(params, id)
        if subscription["status"] == "canceled":
            raise StripeFailure(
                400,
                {
                    "type": "invalid_request_error",
                    "message": "A canceled subscription can only update its metadata.",
                },
            )
        changed_price = None
        for item in params.get("items") or []:
            current = subscription["items"]["data"][0]
            if item.get("id") != current["id"]:
                raise _missing("subscription_item", str(item.get("id")), "items[0][id]")
            if item.get("price") not in self.prices:
                raise _missing("price", str(item.get("price")), "items[0][price]")
            changed_price = item["price"]
        if changed_price and changed_price != subscription["items"]["data"][0]["price"]["id"]:
            old = subscription["items"]["data"][0]["price"]["unit_amount"]
            new = self.prices[changed_price]["unit_amount"]
            if params.get("proration_behavior") == "always_invoice" and new > old:
                self._new_invoice(subscription, new - old)
            subscription["items"]["data"][0]["price"] = copy.deepcopy(self.prices[changed_price])
        if "cancel_at_period_end" in params:
            subscription["cancel_at_period_end"] = _truthy(params["cancel_at_period_end"])
            subscription["cancel_at"] = (
                subscription["items"]["data"][0]["current_period_end"]
                if subscription["cancel_at_period_end"]
                else None
            )
        if params.get("metadata"):
            subscription["metadata"].update(params["metadata"])
        self._emit("customer.subscription.updated", subscription)
        return subscription

    def _cancel_subscription(self, params: dict[str, Any], id: str) -> dict[str, Any]:
        subscription = self._get_subscription(params, id)
        subscription.update(
            status="canceled", canceled_at=int(time.time()), ended_at=int(time.time())
        )
        self._emit("customer.subscription.deleted", subscription)
        return subscription

    def _list_invoices(self, params: dict[str, Any]) -> dict[str, Any]:
        customer = params.get("customer")
        invoices = [i for i in self.invoices.values() if customer in (None, i["customer"])]
        invoices.sort(key=lambda i: i["created"], reverse=True)
        limit = int(params.get("limit") or 10)
        return {
            "object": "list",
            "url": "/v1/invoices",
            "has_more": len(invoices) > limit,
            "data": invoices[:limit],
        }

    def _create_portal_session(self, params: dict[str, Any]) -> dict[str, Any]:
        customer = params.get("customer")
        if customer not in self.customers:
            raise _missing("customer", str(customer), param="customer")
        portal_id = f"bps_{uuid.uuid4().hex[:14]}"
        portal = {
            "id": portal_id,
            "object": "billing_portal.session",
            "customer": customer,
            "return_url": params.get("return_url"),
            "url": f"{self.base_url}/portal/{portal_id}",
            "created": int(time.time()),
            "livemode": False,
        }
        self.portal_sessions[portal_id] = portal
        return portal

    # --- helpers ---------------------------------------------------------------------
    def _new_subscription(
        self, customer: str, price_id: str, metadata: dict[str, Any]
    ) -> dict[str, Any]:
        now = int(time.time())
        subscription_id = f"sub_{uuid.uuid4().hex[:14]}"
        subscription = {
            "id": subscription_id,
            "object": "subscription",
            "customer": customer,
            "status": "active",
            "created": now,
            "start_date": now,
            "cancel_at_period_end": False,
            "cancel_at": None,
            "canceled_at": None,
            "ended_at": None,
            "metadata": dict(metadata),
            "livemode": False,
            "items": {
                "object": "list",
                "has_more": False,
                "url": f"/v1/subscription_items?subscription={subscription_id}",
                "data": [
                    {
                        "id": f"si_{uuid.uuid4().hex[:14]}",
                        "object": "subscription_item",
                        "subscription": subscription_id,
                        "quantity": 1,
                        "price": copy.deepcopy(self.prices[price_id]),
                        "current_period_start": now,
                        "current_period_end": now + MONTH,
                    }
                ],
            },
        }
        self.subscriptions[subscription_id] = subscription
        return subscription

    def _advance(self, subscription: dict[str, Any]) -> None:
        item = subscription["items"]["data"][0]
        item["current_period_start"] = item["current_period_end"]
        item["current_period_end"] += MONTH

    def _new_invoice(
        self, subscription: dict[str, Any], amount: int, *, paid: bool = True
    ) -> dict[str, Any]:
        item = subscription["items"]["data"][0]
        invoice_id = f"in_{uuid.uuid4().hex[:14]}"
        invoice = {
            "id": invoice_id,
            "object": "invoice",
            "customer": subscription["customer"],
            "number": f"KT-{len(self.invoices) + 1:04d}",
            "status": "paid" if paid else "open",
            "currency": "usd",
            "amount_due": amount,
            "amount_paid": amount if paid else 0,
            # Distinct creation times keep "newest first" well defined.
            "created": int(time.time()) + len(self.invoices),
            "period_start": item["current_period_start"],
            "period_end": item["current_period_end"],
            "hosted_invoice_url": f"{self.base_url}/invoice/{invoice_id}",
            "invoice_pdf": f"{self.base_url}/invoice/{invoice_id}/pdf",
            "parent": {
                "type": "subscription_details",
                "subscription_details": {"subscription": subscription["id"]},
            },
        }
        self.invoices[invoice_id] = invoice
        return invoice

    @staticmethod
    def _public(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    def _emit(self, event_type: str, obj: dict[str, Any]) -> None:
        self.events.append(
            {
                "id": f"evt_{uuid.uuid4().hex[:24]}",
                "object": "event",
                "api_version": stripe.api_version,
                "created": int(time.time()),
                "type": event_type,
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "data": {"object": copy.deepcopy(self._public(obj))},
            }
        )


def signed_event(
    event: dict[str, Any], secret: str, *, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers Stripe would POST for ``event``: signed with the real scheme."""
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)
    return payload.encode(), {"Stripe-Signature": header, "Content-Type": "application/json"}

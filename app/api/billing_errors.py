"""Billing and usage-limit errors as HTTP answers, for every route at once.

The services raise domain errors (``app.services.usage``, ``app.services.billing``);
``register(app)`` installs one handler per error, so a route that creates something
simply lets a ``LimitExceeded`` through and the client gets the same 402 body from
every endpoint. ``LIMIT_RESPONSES`` documents it in a route's OpenAPI entry.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse

from app.core import metrics
from app.schemas.billing import LimitExceededRead
from app.services.billing import (
    BillingConflict,
    BillingError,
    BillingNotConfigured,
    PlanNotAvailable,
    WebhookRejected,
)
from app.services.usage import DiskFull, LimitExceeded, MessageQuota

LIMIT_RESPONSES: dict[int | str, dict[str, object]] = {
    402: {"model": LimitExceededRead, "description": "A limit of the plan is reached"},
}
DISK_RESPONSES: dict[int | str, dict[str, object]] = {
    507: {"description": "The server's disk is nearly full (uploads paused for everybody)"},
}


def upgrade_url(request: Request) -> str:
    return f"{request.app.state.settings.public_url}/pricing"


def usage_headers(quota: MessageQuota) -> dict[str, str]:
    """X-Usage-Limit / -Remaining / -Reset of a chat answer ('unlimited' without a limit)."""
    return {
        "X-Usage-Limit": "unlimited" if quota.limit is None else str(quota.limit),
        "X-Usage-Remaining": "unlimited" if quota.remaining is None else str(quota.remaining),
        "X-Usage-Reset": quota.reset_at.isoformat(),
    }


async def _limit_exceeded(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, LimitExceeded)
    metrics.count_quota_rejection(error.limit)
    body = LimitExceededRead(
        detail=error.message,
        limit=error.limit,
        plan=error.plan.key,
        limit_value=error.limit_value,
        usage=error.usage,
        reset_at=error.reset_at,
        upgrade_url=upgrade_url(request),
    )
    headers = {}
    if error.limit == "messages_per_month" and error.reset_at is not None:
        headers = {
            "X-Usage-Limit": str(error.limit_value),
            "X-Usage-Remaining": "0",
            "X-Usage-Reset": error.reset_at.isoformat(),
        }
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=status.HTTP_402_PAYMENT_REQUIRED,
        headers=headers,
    )


def _detail(status_code: int, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"detail": message, **extra}, status_code=status_code)


async def _disk_full(_request: Request, error: Exception) -> JSONResponse:
    return _detail(status.HTTP_507_INSUFFICIENT_STORAGE, str(error))


async def _not_configured(_request: Request, error: Exception) -> JSONResponse:
    # The same body as Stripe's failures: the routes document one 503 shape.
    return _detail(status.HTTP_503_SERVICE_UNAVAILABLE, str(error), kind="config", retryable=False)


async def _plan_not_available(_request: Request, error: Exception) -> JSONResponse:
    return _detail(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error))


async def _conflict(_request: Request, error: Exception) -> JSONResponse:
    return _detail(status.HTTP_409_CONFLICT, str(error))


async def _webhook_rejected(_request: Request, error: Exception) -> JSONResponse:
    return _detail(status.HTTP_400_BAD_REQUEST, str(error))


async def _stripe_failed(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, BillingError)
    if error.kind == "card_declined":
        code = status.HTTP_402_PAYMENT_REQUIRED
    elif error.retryable:
        code = status.HTTP_503_SERVICE_UNAVAILABLE
    else:
        code = status.HTTP_502_BAD_GATEWAY
    return _detail(code, error.message, kind=error.kind, retryable=error.retryable)


def register(app: FastAPI) -> None:
    """Install the handlers on ``app`` (called by create_app)."""
    app.add_exception_handler(LimitExceeded, _limit_exceeded)
    app.add_exception_handler(DiskFull, _disk_full)
    app.add_exception_handler(BillingNotConfigured, _not_configured)
    app.add_exception_handler(PlanNotAvailable, _plan_not_available)
    app.add_exception_handler(BillingConflict, _conflict)
    app.add_exception_handler(WebhookRejected, _webhook_rejected)
    app.add_exception_handler(BillingError, _stripe_failed)

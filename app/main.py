"""The FastAPI application factory.

Run it with ``knowledgetree serve`` or ``uvicorn --factory app.main:create_app``.
``app.main:app`` also works (``uvicorn app.main:app``): the module builds that app
on first access only, so importing ``app.main`` never needs settings.

Where to plug things in (each is one list):
* routers: ``app.api.routes.API_ROUTERS`` (mounted under ``/api``);
* readiness checks: ``app.core.readiness.READINESS_CHECKS``;
* start-up/shutdown work: ``app.core.lifecycle.STARTUP_HOOKS`` / ``SHUTDOWN_HOOKS``.

Paths outside ``/api``: ``/healthz``, ``/readyz`` (load balancer, blue-green switch),
``/metrics`` (Prometheus, on the app port only) and ``/docs`` (OpenAPI UI; the
schema itself is ``/api/openapi.json``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from app.api import billing_errors
from app.api.routes import API_ROUTERS, health
from app.core import lifecycle, openapi
from app.core.body_limit import BodyLimitMiddleware
from app.core.config import Settings, get_settings
from app.core.db import DatabaseUnavailable, dispose_engines
from app.core.logging import RequestContextMiddleware, configure_logging
from app.core.readiness import READINESS_CHECKS
from app.core.request_metrics import metrics_endpoint
from app.core.sentry import app_release, init_sentry

logger = logging.getLogger(__name__)

API_PREFIX = "/api"
# The one route that takes large bodies (multipart uploads, streamed to disk).
UPLOAD_ROUTE = ("POST", f"{API_PREFIX}/projects/{{project_id}}/documents")


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    for hook in lifecycle.STARTUP_HOOKS:
        await hook(app)
    logger.info("KnowledgeTree %s ready (%s)", app.version, app.state.settings.environment)
    try:
        yield
    finally:
        for hook in reversed(lifecycle.SHUTDOWN_HOOKS):
            await hook(app)
        await dispose_engines()


async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    """Unexpected errors: a JSON body like every other error (details go to the log and
    Sentry, never to the client)."""
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return JSONResponse(
        status_code=500, content={"detail": "Internal server error; it has been logged"}
    )


# How long a client should wait before trying again after a 503 (a restart of Postgres
# takes a few seconds).
DATABASE_RETRY_AFTER_SECONDS = 5


async def _database_unavailable(request: Request, error: Exception) -> JSONResponse:
    """Postgres is away (restart, failover): a clear 503 instead of a 500 with a trace;
    the pool reconnects by itself when the server is back."""
    logger.warning(
        "database unavailable on %s %s: %s", request.method, request.url.path, error.__cause__
    )
    return JSONResponse(
        status_code=503,
        content={"detail": str(error), "kind": DatabaseUnavailable.kind, "retryable": True},
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Without ``settings`` the process settings are loaded (and a
    missing or invalid variable raises ConfigurationError naming it)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    release = app_release(settings)
    init_sentry(settings)

    app = FastAPI(
        title="KnowledgeTree",
        version=release,
        description="Self-hosted RAG chat over your documents.",
        lifespan=_lifespan,
        docs_url="/docs",
        openapi_url=f"{API_PREFIX}/openapi.json",
    )
    app.state.settings = settings
    app.add_exception_handler(Exception, _internal_error)
    app.add_exception_handler(DatabaseUnavailable, _database_unavailable)
    billing_errors.register(app)  # plan limits (402), full disk (507), Stripe failures
    app.state.readiness_checks = dict(READINESS_CHECKS)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,  # bearer tokens, no cookies
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type"],
            # A cross-origin browser app may read the chat's usage headers.
            expose_headers=["X-Usage-Limit", "X-Usage-Remaining", "X-Usage-Reset"],
        )

    # Added last, so it runs first: a body over the limit never reaches auth or parsing.
    app.add_middleware(
        BodyLimitMiddleware,
        default_limit=settings.max_request_body_bytes,
        large_routes={UPLOAD_ROUTE: settings.max_upload_request_bytes},
    )
    # Outermost: every answer (a 413 too) carries the request id, is counted and logged.
    app.add_middleware(RequestContextMiddleware, api_prefix=API_PREFIX)

    for router in API_ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
    # Load balancers and the blue-green switch probe the root paths; Prometheus
    # scrapes /metrics on the app port (nginx only exposes /api).
    app.include_router(health.router, include_in_schema=False)
    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    openapi.install(app, settings)
    return app


def __getattr__(name: str) -> FastAPI:
    """``app.main:app``: build the default app lazily, on first access."""
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

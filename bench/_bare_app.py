"""The app with its observability off, for bench/observability_overhead.py: no Sentry
(SENTRY_DSN unset by the caller) and without the request middleware (request id, access
log, HTTP metrics). ``uvicorn --factory bench._bare_app:create_app``."""

from __future__ import annotations

from fastapi import FastAPI

from app.core.logging import RequestContextMiddleware
from app.main import create_app as create_full_app


def create_app() -> FastAPI:
    app = create_full_app()
    app.user_middleware = [m for m in app.user_middleware if m.cls is not RequestContextMiddleware]
    return app

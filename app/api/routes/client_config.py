"""GET /api/client-config: what the browser app needs to know at run time.

The SPA is built once and served for every installation, so the settings that
differ per installation (the browser's Sentry DSN, the release it reports) come
from here, not from the build. Nothing secret: a Sentry DSN is public by design.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from app.core.sentry import app_release

router = APIRouter(tags=["client-config"])


class ClientConfig(BaseModel):
    environment: str
    release: str
    sentry_dsn: str | None
    sentry_traces_sample_rate: float


@router.get("/client-config", response_model=ClientConfig)
async def client_config(request: Request) -> ClientConfig:
    settings = request.app.state.settings
    return ClientConfig(
        environment=settings.environment,
        release=app_release(settings),
        sentry_dsn=settings.sentry_frontend_dsn,
        sentry_traces_sample_rate=settings.sentry_traces_sample_rate,
    )

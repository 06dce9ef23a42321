"""Liveness and readiness, for load balancers, the blue-green switch and monitoring.

* ``GET /healthz``: 200 while the process serves requests (no dependencies checked).
* ``GET /readyz``: 200 when every readiness check passes, else 503; the body lists
  each check: ``{"status": "ready", "checks": {"database": {"ok": true, "detail": ...}}}``.
* ``GET /version``: the release this process runs and its git commit
  (``{"version": "0.1.0-g1234abcd", "commit": "1234abcd"}``).

Mounted both at the root (``/healthz``) and under ``/api``.
"""

from __future__ import annotations

import re
from typing import Literal

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel

from app.core.readiness import run_readiness_checks

router = APIRouter(tags=["health"])


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class CheckReport(BaseModel):
    ok: bool
    detail: str


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, CheckReport]


class VersionInfo(BaseModel):
    version: str
    commit: str | None


# scripts/build_release.sh names a release <version>-g<commit>[-dirty-<hash>].
_COMMIT_IN_RELEASE = re.compile(r"-g([0-9a-f]{7,40})(?:-|$)")


@router.get("/version", response_model=VersionInfo)
async def version(request: Request) -> VersionInfo:
    release = request.app.version
    match = _COMMIT_IN_RELEASE.search(release)
    return VersionInfo(version=release, commit=match.group(1) if match else None)


@router.get("/healthz", response_model=Liveness)
async def healthz() -> Liveness:
    return Liveness()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A check failed"}},
)
async def readyz(request: Request, response: Response) -> Readiness:
    results = await run_readiness_checks(request.app)
    ready = all(result.ok for result in results.values())
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(
        status="ready" if ready else "not ready",
        checks={name: CheckReport(ok=r.ok, detail=r.detail) for name, r in results.items()},
    )

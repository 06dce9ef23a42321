"""``/metrics``, and the route template that labels a request (the requests are counted
by ``app.core.logging.RequestContextMiddleware``, with their access log line).

``/metrics`` is mounted at the root only, never under ``/api``: nginx proxies
``/api`` to the world, while Prometheus scrapes the app port on the host itself.
The endpoint also refuses any caller outside ``METRICS_ALLOWED_NETWORKS`` and any
request that came through a proxy, so a mistake in nginx does not publish it.
"""

from __future__ import annotations

import ipaddress

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Scope

UNMATCHED_ROUTE = "(unmatched)"


def route_template(scope: Scope, api_prefix: str = "/api") -> str:
    """The matched route's template (``/api/projects/{project_id}``), or ``(unmatched)``."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not template:
        return UNMATCHED_ROUTE
    # FastAPI keeps the route's own path; the prefix given to include_router is
    # not part of it, so put the /api prefix back for routes served under it.
    path: str = scope["path"]
    if path.startswith(api_prefix + "/") and not template.startswith(api_prefix + "/"):
        template = api_prefix + template
    return template


# Headers a reverse proxy adds: a request carrying one came through nginx, not from
# Prometheus on the host, whatever its peer address says.
_PROXY_HEADERS = ("x-forwarded-for", "x-real-ip", "forwarded")


def metrics_caller_allowed(request: Request) -> bool:
    networks = request.app.state.settings.metrics_allowed_networks
    if any(header in request.headers for header in _PROXY_HEADERS):
        return False
    host = request.client.host if request.client else None
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    return any(address in network for network in networks)


async def metrics_endpoint(request: Request) -> Response:
    if not metrics_caller_allowed(request):
        return PlainTextResponse("Forbidden", status_code=403)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

"""Prometheus metrics: HTTP request counts and latencies, served at ``/metrics``.

``/metrics`` is mounted at the root only, never under ``/api``: nginx proxies
``/api`` to the world, while Prometheus scrapes the app port on the host itself.

Requests are labelled by route template (``/api/projects/{project_id}``), not by the
raw path, so ids do not explode the number of series. Other parts of the app
define their own metrics at module level with ``prometheus_client`` (default
registry); they appear here automatically.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Counter(
    "knowledgetree_http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "knowledgetree_http_request_duration_seconds",
    "Time from request to the end of the response body (whole stream for SSE), by route.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
UNMATCHED_ROUTE = "(unmatched)"


class MetricsMiddleware:
    """Pure ASGI middleware (no buffering, so SSE streams pass through untouched)."""

    def __init__(self, app: ASGIApp, api_prefix: str = "/api") -> None:
        self.app = app
        self.api_prefix = api_prefix

    def _route_template(self, scope: Scope) -> str:
        route = scope.get("route")
        template = getattr(route, "path", None)
        if not template:
            return UNMATCHED_ROUTE
        # FastAPI keeps the route's own path; the prefix given to include_router is
        # not part of it, so put the /api prefix back for routes served under it.
        path: str = scope["path"]
        if path.startswith(self.api_prefix + "/") and not template.startswith(
            self.api_prefix + "/"
        ):
            template = self.api_prefix + template
        return template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app dies before sending a response

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            template = self._route_template(scope)
            method = scope["method"]
            HTTP_REQUESTS.labels(method, template, str(status)).inc()
            HTTP_REQUEST_SECONDS.labels(method, template).observe(time.perf_counter() - started)


async def metrics_endpoint(_request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

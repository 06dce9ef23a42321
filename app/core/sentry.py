"""Sentry error reports (off unless SENTRY_DSN is set), without personal data.

What keeps personal data out of the events, and why each is needed:
* the SDK's default data collection: no user identity, IP address or cookies;
* ``max_request_body_size="never"``: the SDK otherwise attaches JSON request bodies
  (chat messages, passwords) up to 10 KB;
* ``include_local_variables=False``: a frame's variables can hold document text;
* ``EventScrubber`` with ``DENYLIST`` (recursive): the SDK's own list removes
  ``password`` but not ``refresh_token`` or a chat ``message``;
* ``_scrub_query_strings``: a query string is one raw string the scrubber skips;
* the engine's ``hide_parameters=True`` (``app.core.db``): SQL errors carry no bound
  parameters; the drivers' own messages still quote values (asyncpg's "invalid input
  for query argument $1: 'a@b.c'", Postgres's "Key (email)=(a@b.c) already exists"),
  so ``_scrub_database_errors`` blanks quoted values in database exceptions (the
  JSON log does the same).

Reports come from unhandled request errors (the FastAPI integration) and from every
``logger.exception``/``logger.error`` (the logging integration): background
ingestion and the chat turn of an SSE stream log their failures that way.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from app.core.config import Settings
from app.core.logging import FILTERED, is_database_error_module, redact_database_message

# Every field of the API that holds a secret or something a person wrote, plus the
# SDK's defaults. Matched case-insensitively against keys at any depth.
DENYLIST = (
    # secrets
    "password", "new_password", "current_password", "refresh_token", "access_token",
    "token", "secret_key", "api_key", "authorization", "cookie", "set_cookie",
    "stripe_signature", "invoice_pdf", "hosted_invoice_url",
    # what people wrote or who they are
    "message", "messages", "content", "text", "snippet", "query", "q", "email", "name",
    "title", "description", "filename", "document_name", "heading",
)  # fmt: skip


def app_release(settings: Settings) -> str:
    """The deployed version: RELEASE if set, else the RELEASE file of the release folder
    the app runs from (``<release>/venv`` is ``sys.prefix``; the app role keeps the file
    in ``<release>/files/``), else the package version."""
    if settings.release:
        return settings.release
    release_dir = Path(sys.prefix).parent
    for release_file in (release_dir / "files" / "RELEASE", release_dir / "RELEASE"):
        if release_file.is_file() and (name := release_file.read_text().strip()):
            return name
    try:
        return version("knowledgetree")
    except PackageNotFoundError:  # a source tree that is not installed
        return "0+unknown"


def _scrub_query(query: str) -> str:
    denied = {key.lower() for key in DENYLIST}
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(key, FILTERED if key.lower() in denied else val) for key, val in pairs])


def _scrub_query_strings(event: dict[str, Any]) -> None:
    """The request's query string and those of outgoing HTTP calls (breadcrumbs)."""
    request = event.get("request")
    if isinstance(request, dict) and request.get("query_string"):
        request["query_string"] = _scrub_query(str(request["query_string"]))
    for crumb in (event.get("breadcrumbs") or {}).get("values") or []:
        data = crumb.get("data") if isinstance(crumb, dict) else None
        if isinstance(data, dict) and data.get("http.query"):
            data["http.query"] = _scrub_query(str(data["http.query"]))


def _scrub_database_errors(event: dict[str, Any]) -> None:
    for value in (event.get("exception") or {}).get("values") or []:
        if is_database_error_module(str(value.get("module") or "")) and isinstance(
            value.get("value"), str
        ):
            value["value"] = redact_database_message(value["value"])


# Paths that health checks and Prometheus poll every few seconds: a trace of one tells
# nobody anything, and at 5 % they would still be most of the traces sent.
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/api/healthz", "/api/readyz", "/metrics"})


def traces_sampler(rate: float) -> Callable[[dict[str, Any]], float]:
    """Sample requests at ``rate``, except the probes' (never traced)."""

    def sample(context: dict[str, Any]) -> float:
        scope = context.get("asgi_scope") or {}
        return 0.0 if scope.get("path") in PROBE_PATHS else rate

    return sample


def _before_send(event: dict[str, Any], _hint: dict[str, Any]) -> dict[str, Any]:
    _scrub_query_strings(event)
    _scrub_database_errors(event)
    return event


def init_sentry(settings: Settings) -> bool:
    """Start the Sentry SDK if SENTRY_DSN is set; True when it was started."""
    if not settings.sentry_dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.fastapi import FastApiIntegration
    from sentry_sdk.integrations.httpx import HttpxIntegration
    from sentry_sdk.integrations.logging import ignore_logger
    from sentry_sdk.integrations.starlette import StarletteIntegration
    from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.environment,
        release=f"knowledgetree@{app_release(settings)}",
        # The integrations this app needs, named: the SDK would otherwise switch on every
        # one whose library is installed, and three of them cost CPU on every request or
        # streamed token for nothing: asyncpg's spans and breadcrumbs repeat SQLAlchemy's
        # for each query, Anthropic's wraps each streamed event, Hugging Face's the model.
        # SQLAlchemy's is left out too: it builds a span and a breadcrumb for every query
        # of every request, sampled or not (half of Sentry's cost on a two-query request,
        # bench/observability_overhead.py). Database errors still reach Sentry as the
        # request's exception; sampled traces lose their per-query spans.
        auto_enabling_integrations=False,
        integrations=[
            StarletteIntegration(),
            FastApiIntegration(),
            HttpxIntegration(),  # breadcrumbs of calls to Anthropic and Stripe
        ],
        # Trace headers only for our own services: Anthropic and Stripe have no use for
        # them (and computing them costs a little on every outgoing call).
        trace_propagation_targets=[],
        max_request_body_size="never",
        include_local_variables=False,
        event_scrubber=EventScrubber(
            denylist=sorted({*DEFAULT_DENYLIST, *DENYLIST}), recursive=True
        ),
        before_send=_before_send,
        before_send_transaction=_before_send,
        # 0 turns tracing off altogether (None): at any rate above 0 the SDK instruments
        # every request, which costs CPU even for the requests it does not send.
        traces_sample_rate=settings.sentry_traces_sample_rate or None,
        traces_sampler=(
            traces_sampler(settings.sentry_traces_sample_rate)
            if settings.sentry_traces_sample_rate
            else None
        ),
    )
    # Loggers whose records would only be breadcrumbs nobody reads: the access line is
    # written when the request is over (after its error was sent), and httpx's request
    # line repeats the breadcrumb HttpxIntegration records. Each record costs the
    # logging integration's work on every request otherwise.
    for name in ("app.access", "httpx"):
        ignore_logger(name)
    return True

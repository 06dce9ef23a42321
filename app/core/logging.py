"""Logging: one JSON object per line on stderr (the journal keeps it), with a request id.

* ``configure_logging(level)`` puts ``JsonFormatter`` on the root logger; uvicorn's
  own loggers propagate to it (``knowledgetree serve`` gives uvicorn no config of its
  own and turns its access log off: the line below replaces it).
* ``RequestContextMiddleware`` takes ``X-Request-ID`` from nginx when it is well formed
  (else makes one), makes it the ``request_id`` of every record logged while the
  request runs, echoes it in the response, and logs one access line per request
  with the route template, never the raw path or the query string (``?q=`` is text
  a person wrote). It also counts the request in the HTTP metrics (``app.core.metrics``).

What the app logs never holds a secret, an e-mail or text a person wrote: log ids.
Database drivers quote values in their error messages (asyncpg: "invalid input for
query argument $1: 'a@b.c'"), so the formatter blanks them in tracebacks.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core import metrics
from app.core.request_metrics import route_template

REQUEST_ID_HEADER = "x-request-id"
# nginx's $request_id is 32 hex digits; accept that, UUIDs and similar tokens only.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
access_logger = logging.getLogger("app.access")

FILTERED = "[Filtered]"
_DATABASE_MODULES = frozenset({"asyncpg", "sqlalchemy", "psycopg", "psycopg2"})
_QUOTED = re.compile(r"'(?:[^']|'')*'")
_KEY_VALUE = re.compile(r"\)=\(.*?\)(?= already exists| is not present|\.|$)", re.MULTILINE)


def is_database_error_module(module: str) -> bool:
    return module.split(".")[0] in _DATABASE_MODULES


def redact_database_message(message: str) -> str:
    """Blank the values a database error quotes: 'a@b.c' and Key (email)=(a@b.c)."""
    return _KEY_VALUE.sub(f")=({FILTERED})", _QUOTED.sub(f"'{FILTERED}'", message))


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "request_id"?, "exception"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)

    def formatException(self, exc_info) -> str:  # logging's own name
        text = super().formatException(exc_info)
        error: BaseException | None = exc_info[1]
        seen: set[int] = set()
        while error is not None and id(error) not in seen:  # the whole __cause__ chain
            seen.add(id(error))
            if is_database_error_module(type(error).__module__):
                message = str(error)
                text = text.replace(message, redact_database_message(message))
            error = error.__cause__ or error.__context__
        return text


def configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not any(getattr(handler, "_knowledgetree", False) for handler in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        handler._knowledgetree = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("app").setLevel(level)


def incoming_request_id(value: str | None) -> str:
    """The caller's id if it is well formed, else a new one."""
    if value and _REQUEST_ID.match(value):
        return value
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Pure ASGI (streams pass through): request id in, request id out, and at the end
    of the response (of the whole stream for SSE) one access line and the HTTP metrics."""

    def __init__(self, app: ASGIApp, api_prefix: str = "/api") -> None:
        self.app = app
        self.api_prefix = api_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode())
        request_id = incoming_request_id(raw.decode("latin-1") if raw else None)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k != REQUEST_ID_HEADER.encode()
                ]
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = route_template(scope, self.api_prefix)
            seconds = time.perf_counter() - started
            metrics.observe_http(scope["method"], route, status, seconds)
            access_logger.info(
                "request",
                extra={
                    "fields": {
                        "method": metrics.bounded(scope["method"], metrics.KNOWN_METHODS),
                        "route": route,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 1),
                    }
                },
            )
            request_id_var.reset(token)

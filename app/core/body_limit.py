"""A limit on the size of every request body, enforced before the body is read.

FastAPI reads and parses a JSON body before the route's dependencies (the token
check among them) run, so without a limit anybody could make the app hold a
400 MB body in memory. ``BodyLimitMiddleware`` answers 413 as soon as it knows the
body is too large:

* a ``Content-Length`` over the limit is refused before a byte is read;
* a body without one (chunked) is counted while it streams in; at the limit the
  app is told the client went away and the answer becomes 413.

Every request gets ``MAX_REQUEST_BODY_KB``; the routes named in ``large_routes``
(the upload route) get their own, larger limit.
"""

from __future__ import annotations

import json
import re

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOO_LARGE_DETAIL = "Request body too large (at most {limit} bytes here)"


class BodyLimitMiddleware:
    def __init__(
        self, app: ASGIApp, *, default_limit: int, large_routes: dict[tuple[str, str], int]
    ) -> None:
        """``large_routes`` maps (method, path template such as
        ``/api/projects/{project_id}/documents``) to that route's limit in bytes."""
        self.app = app
        self.default_limit = default_limit
        self.large_routes: list[tuple[str, re.Pattern[str], int]] = [
            (method.upper(), compile_path(path)[0], limit)
            for (method, path), limit in large_routes.items()
        ]

    def limit_for(self, method: str, path: str) -> int:
        for route_method, pattern, limit in self.large_routes:
            if method == route_method and pattern.match(path):
                return limit
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _send_413(send, limit)
            return

        received = 0
        too_large = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Stop feeding the app: to it the client has gone away.
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if too_large and not response_started:
                return  # the 413 below replaces whatever the app answers
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not too_large or response_started:
                raise
        if too_large and not response_started:
            await _send_413(send, limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send: Send, limit: int) -> None:
    body = json.dumps({"detail": TOO_LARGE_DETAIL.format(limit=limit)}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

"""A local stand-in for the Anthropic Messages API, speaking the real wire protocol.

It is a real HTTP server (Starlette on uvicorn, in a background thread, bound to
127.0.0.1 on a random port). The app reaches it only through ANTHROPIC_BASE_URL,
exactly as it would reach api.anthropic.com, and is driven by the real
`anthropic` SDK. Nothing in the app knows it exists.

What it speaks:
- `POST /v1/messages` with `"stream": true`: the real SSE sequence
  message_start, content_block_start, ping, content_block_delta (text_delta)...,
  content_block_stop, message_delta (stop_reason + usage), message_stop.
- `POST /v1/messages` without streaming: one JSON Message object.
- Errors in Anthropic's envelope `{"type": "error", "error": {"type", "message"}}`:
  HTTP 429 rate_limit_error, 529 overloaded_error, 500 api_error, a hang (no
  response at all), an `event: error` in the middle of a stream, and a stall in
  the middle of a stream.

Each test scripts the behaviour with `Script` (the default one, a queue of one-off
scripts consumed request by request, or `route(marker, script)`: the script of every
request whose question contains `marker`, for concurrent requests), and inspects
`requests` (what the app sent) and `streams` (how each stream ended, including whether
the client disconnected before the end, which proves the app cancelled the upstream
stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

Failure = Literal[
    "rate_limit",  # HTTP 429 rate_limit_error
    "overloaded",  # HTTP 529 overloaded_error
    "server_error",  # HTTP 500 api_error
    "hang",  # accept the request, never answer (the client's timeout must fire)
    "midstream_error",  # start streaming, then `event: error` (overloaded_error)
    "midstream_stall",  # start streaming, then go silent
    "midstream_drop",  # start streaming, then drop the connection (no end of body)
]

_HTTP_ERRORS: dict[str, tuple[int, str, str]] = {
    "rate_limit": (
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your rate limit.",
    ),
    "overloaded": (529, "overloaded_error", "Overloaded"),
    "server_error": (500, "api_error", "Internal server error"),
}


@dataclass
class Script:
    """How the stand-in answers one request.

    text: the reply; None means "echo": a reply that quotes and cites every
    numbered passage found in the system prompt (so citation tests are meaningful).
    """

    text: str | None = "Hello from the stand-in."
    first_token_delay: float = 0.0
    token_delay: float = 0.0
    failure: Failure | None = None
    # For midstream_error / _stall / _drop: how many text deltas go out first.
    fail_after_tokens: int = 3
    # For hang / midstream_stall: how long to stay silent (bounded, so nothing leaks).
    hang_seconds: float = 30.0
    # Benchmarks: each delta's text is "<request received>/<delta sent>", two readings
    # of `time.monotonic()` (one clock for every process of the machine), so a client
    # can tell the delay the app added from the stand-in's own time and lateness.
    stamp_tokens: bool = False


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def system(self) -> str:
        system = self.body.get("system") or ""
        if isinstance(system, list):  # list of text blocks
            return "".join(block.get("text", "") for block in system)
        return system

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", [])

    @property
    def last_user_text(self) -> str:
        """The text of the last message (the question, with the passages before it)."""
        content = self.messages[-1]["content"] if self.messages else ""
        if isinstance(content, list):  # list of content blocks
            return "".join(block.get("text", "") for block in content)
        return str(content)


@dataclass
class StreamRecord:
    """How one streamed answer ended, seen from the server."""

    request_index: int
    tokens_sent: int = 0
    completed: bool = False
    client_disconnected: bool = False
    ended_at: float | None = None
    first_token_at: float | None = None
    started_at: float = field(default_factory=time.monotonic)


def _tokens(text: str) -> list[str]:
    """Split a reply into word-sized deltas that keep their whitespace."""
    return re.findall(r"\S+\s*|\s+", text) or [text]


def echo_reply(prompt: str) -> str:
    """A reply that quotes the first words of every numbered passage and cites it."""
    passages = re.findall(
        r"^\[(\d+)\][^\n]*\n(.*?)(?=^\[\d+\]|</document>|\Z)", prompt, flags=re.M | re.S
    )
    if not passages:
        return "I found no passages in the context."
    parts = []
    for number, body in passages:
        words = " ".join(body.split()[:8])
        parts.append(f"Passage {number} says: {words} [{number}].")
    return " ".join(parts)


class FakeAnthropicServer:
    """Start with `start()` (or as a context manager); `base_url` goes into ANTHROPIC_BASE_URL."""

    def __init__(self) -> None:
        self.default = Script()
        self._queue: deque[Script] = deque()
        self._routes: dict[str, Script] = {}
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self.streams: list[StreamRecord] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.app = Starlette(routes=[Route("/v1/messages", self._messages, methods=["POST"])])

    # --- scripting -------------------------------------------------------------------
    def script(self, *scripts: Script) -> None:
        """Queue one-off scripts: each request takes the next one, then the default applies."""
        with self._lock:
            self._queue.extend(scripts)

    def route(self, marker: str, script: Script) -> None:
        """Answer every request whose last user turn contains `marker` with `script`
        (before the queue and the default): concurrent requests get their own script."""
        with self._lock:
            self._routes[marker] = script

    def reset(self) -> None:
        with self._lock:
            self.default = Script()
            self._queue.clear()
            self._routes.clear()
            self.requests.clear()
            self.streams.clear()

    def _next_script(self, question: str) -> Script:
        with self._lock:
            for marker, script in self._routes.items():
                if marker in question:
                    return script
            return self._queue.popleft() if self._queue else self.default

    # --- lifecycle -------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        assert self._socket is not None, "server not started"
        host, port = self._socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self, host: str = "127.0.0.1") -> FakeAnthropicServer:
        """host: another local address where the app runs elsewhere (a container)."""
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, 0))
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
            backlog=2048,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="fake-anthropic", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake Anthropic server did not start")
            time.sleep(0.01)
        return self

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()
            assert self._server is not None and self._socket is not None
            await self._server.serve(sockets=[self._socket])

        asyncio.run(main())

    def stop(self) -> None:
        if self._server is None:
            return
        if self._loop and self._stopping:
            self._loop.call_soon_threadsafe(self._stopping.set)  # release hanging handlers
        self._server.should_exit = True
        if self._thread:
            self._thread.join(timeout=10)
        self._server = None

    def __enter__(self) -> FakeAnthropicServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _silence(self, seconds: float) -> None:
        """Stay silent for `seconds`, or until the server stops."""
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    # --- the endpoint ----------------------------------------------------------------
    async def _messages(self, request: Request) -> Response:
        received = time.monotonic()
        body = await request.json()
        with self._lock:
            self.requests.append(
                RecordedRequest(path=request.url.path, headers=dict(request.headers), body=body)
            )
            index = len(self.requests) - 1
        script = self._next_script(RecordedRequest("", {}, body).last_user_text)
        request_id = f"req_{uuid.uuid4().hex[:24]}"

        if not request.headers.get("x-api-key"):
            return _error_response(
                401, "authentication_error", "x-api-key header is required", request_id
            )
        if script.failure in _HTTP_ERRORS:
            status, kind, message = _HTTP_ERRORS[script.failure]
            return _error_response(status, kind, message, request_id)
        if script.failure == "hang":
            await self._silence(script.hang_seconds)
            return _error_response(504, "timeout_error", "stand-in hang ended", request_id)

        text = (
            script.text
            if script.text is not None
            # The app sends the passages in the last user turn.
            else echo_reply(RecordedRequest("", {}, body).last_user_text)
        )
        input_tokens = max(1, len(json.dumps(body)) // 4)
        if body.get("stream"):
            record = StreamRecord(request_index=index)
            with self._lock:
                self.streams.append(record)
            return StreamingResponse(
                self._stream(body, script, text, input_tokens, record, received),
                media_type="text/event-stream",
                headers={"request-id": request_id, "cache-control": "no-cache"},
            )
        if script.first_token_delay:
            await asyncio.sleep(script.first_token_delay)
        return JSONResponse(
            {
                "id": f"msg_{uuid.uuid4().hex[:24]}",
                "type": "message",
                "role": "assistant",
                "model": body.get("model"),
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": len(_tokens(text))},
            },
            headers={"request-id": request_id},
        )

    async def _stream(
        self,
        body: dict[str, Any],
        script: Script,
        text: str,
        input_tokens: int,
        record: StreamRecord,
        received: float,
    ):
        def event(name: str, data: dict[str, Any]) -> bytes:
            return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

        tokens = _tokens(text)
        try:
            yield event(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": f"msg_{uuid.uuid4().hex[:24]}",
                        "type": "message",
                        "role": "assistant",
                        "model": body.get("model"),
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": input_tokens, "output_tokens": 1},
                    },
                },
            )
            yield event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            yield event("ping", {"type": "ping"})
            if script.first_token_delay:
                await asyncio.sleep(script.first_token_delay)
            for i, token in enumerate(tokens):
                if (
                    script.failure in ("midstream_error", "midstream_stall", "midstream_drop")
                    and i == script.fail_after_tokens
                ):
                    if script.failure == "midstream_stall":
                        await self._silence(script.hang_seconds)
                        return
                    if script.failure == "midstream_drop":
                        # An exception in the body makes uvicorn close the connection
                        # without the chunked body's end: what a network cut looks like.
                        record.completed = True  # on purpose
                        raise RuntimeError("stand-in: connection dropped on purpose")
                    yield event(
                        "error",
                        {
                            "type": "error",
                            "error": {"type": "overloaded_error", "message": "Overloaded"},
                        },
                    )
                    record.completed = True  # the server ended it on purpose
                    return
                if i and script.token_delay:
                    await asyncio.sleep(script.token_delay)
                if script.stamp_tokens:
                    token = f"{received:.6f}/{time.monotonic():.6f} "
                yield event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": token},
                    },
                )
                record.tokens_sent += 1
                if record.first_token_at is None:
                    record.first_token_at = time.monotonic()
            yield event("content_block_stop", {"type": "content_block_stop", "index": 0})
            yield event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": len(tokens)},
                },
            )
            yield event("message_stop", {"type": "message_stop"})
            record.completed = True
        except (asyncio.CancelledError, GeneratorExit, OSError):
            record.client_disconnected = True
            raise
        finally:
            record.ended_at = time.monotonic()
            if not record.completed:
                record.client_disconnected = True


def _error_response(status: int, kind: str, message: str, request_id: str) -> JSONResponse:
    headers = {"request-id": request_id}
    if status == 429:
        headers["retry-after"] = "1"
    return JSONResponse(
        {"type": "error", "error": {"type": kind, "message": message}},
        status_code=status,
        headers=headers,
    )


def main() -> None:
    """Run the stand-in on its own (for benchmarks): prints its base URL, serves until
    stdin closes or SIGTERM."""
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--text", default=None, help="reply text (default: echo the passages)")
    parser.add_argument("--first-token-delay", type=float, default=0.0)
    parser.add_argument("--token-delay", type=float, default=0.0)
    parser.add_argument(
        "--stamp-tokens", action="store_true", help='delta text: "<received>/<sent>" times'
    )
    args = parser.parse_args()
    server = FakeAnthropicServer()
    server.default = Script(
        text=args.text,
        first_token_delay=args.first_token_delay,
        token_delay=args.token_delay,
        stamp_tokens=args.stamp_tokens,
    )
    server.start()
    # Nothing to keep per request in a long benchmark run.
    server.requests = _Discard()  # type: ignore[assignment]
    server.streams = _Discard()  # type: ignore[assignment]
    print(server.base_url, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    stop.wait()
    server.stop()


class _Discard(list):
    def append(self, item: object) -> None:
        pass

    def __len__(self) -> int:
        return 0


if __name__ == "__main__":
    main()

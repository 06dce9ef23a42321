"""A local stand-in for Sentry's ingestion endpoint (tests only).

It speaks the real wire protocol the Sentry SDK uses: ``POST /api/<project>/envelope/``
with an envelope body (a JSON header line, then items: a JSON item header and a
payload of ``length`` bytes or one line), optionally gzip/deflate/brotli compressed.
Received items are kept in memory for assertions.

    with SentryStandIn() as sentry:
        sentry_sdk.init(dsn=sentry.dsn)
        ...
        sentry_sdk.flush()
        assert sentry.events()[0]["exception"]["values"][0]["type"] == "RuntimeError"
"""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class EnvelopeItem:
    headers: dict[str, Any]
    payload: bytes

    @property
    def type(self) -> str:
        return self.headers.get("type", "")

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Envelope:
    project: str
    headers: dict[str, Any]
    items: list[EnvelopeItem] = field(default_factory=list)


def parse_envelope(body: bytes, project: str) -> Envelope:
    header_line, _, rest = body.partition(b"\n")
    envelope = Envelope(project=project, headers=json.loads(header_line))
    while rest.strip():
        item_header_line, _, rest = rest.partition(b"\n")
        if not item_header_line.strip():
            continue
        item_headers = json.loads(item_header_line)
        length = item_headers.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length:].removeprefix(b"\n")
        envelope.items.append(EnvelopeItem(item_headers, payload))
    return envelope


def _decompress(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        import brotli

        return brotli.decompress(body)
    return body


class SentryStandIn:
    """Threaded HTTP server on 127.0.0.1 collecting Sentry envelopes."""

    def __init__(self, port: int = 0) -> None:
        self.envelopes: list[Envelope] = []
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) != 3 or parts[0] != "api" or parts[2] != "envelope":
                    self.send_error(404, "unknown endpoint")
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = _decompress(body, self.headers.get("Content-Encoding", ""))
                envelope = parse_envelope(body, project=parts[1])
                with stand_in._lock:
                    stand_in.envelopes.append(envelope)
                payload = json.dumps({"id": envelope.headers.get("event_id")}).encode()
                self.send_response(200)
                # As Sentry does: browsers may read the answer from any origin.
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self.port}/1"

    def items(self, item_type: str) -> list[EnvelopeItem]:
        with self._lock:
            return [i for e in self.envelopes for i in e.items if i.type == item_type]

    def events(self) -> list[dict[str, Any]]:
        return [item.json() for item in self.items("event")]

    def __enter__(self) -> SentryStandIn:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

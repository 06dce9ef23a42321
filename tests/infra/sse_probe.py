"""A test-only Server-Sent Events upstream, run ON the test host by test_nginx.py.

It answers ``POST /api/chat/stream`` (the path of the app's chat stream) with
``token`` events spaced ``--interval`` seconds apart and no ``X-Accel-Buffering``
header, so the only thing that can make them reach the client one by one is
nginx's own configuration of that location (proxy_buffering off, no gzip).
Python standard library only: the host has python3 and nothing else is needed.
"""

from __future__ import annotations

import argparse
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    tokens: int = 5
    interval: float = 0.5

    def do_POST(self) -> None:
        if not self.path.startswith("/api/chat/stream"):
            self.send_error(404)
            return
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index in range(self.tokens):
            event = f"event: token\ndata: {json.dumps({'index': index, 'sent': time.time()})}\n\n"
            self._chunk(event.encode())
            time.sleep(self.interval)
        self._chunk(b"event: done\ndata: {}\n\n")
        self._chunk(b"")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=5)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()
    Handler.tokens, Handler.interval = args.tokens, args.interval
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()

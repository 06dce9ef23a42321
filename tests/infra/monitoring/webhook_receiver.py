#!/usr/bin/python3
"""Alertmanager webhook receiver for the monitoring test: appends each POSTed
notification (JSON) as one line to a file.  Usage: kt-webhook-receiver HOST PORT FILE"""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(sys.argv[3], "a", encoding="utf-8") as out:
            out.write(json.dumps(json.loads(body)) + "\n")
        self.send_response(200)
        self.end_headers()


HTTPServer((sys.argv[1], int(sys.argv[2])), Receiver).serve_forever()

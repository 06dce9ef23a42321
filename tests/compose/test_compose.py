"""docker-compose.prod.yml for real: Docker on this machine, the images built from the
release, Postgres 17 + pgvector, nginx and a certificate from pebble.

The test starts its own dockerd (scripts/compose_dockerd.sh, without Docker's firewall
rules so the nspawn test hosts keep their NAT) and stops it at the end. Through nginx
over HTTPS (verified against pebble's root, on loopback high ports): register, upload a
document, see it ready, a streamed chat answer with sources from the Anthropic stand-in;
then `docker-compose down` and up again, and everything is still there. Then
`scripts/compose.sh update` to a second release of the same sources (KT_RELEASE_SUFFIX)
under load: requests through nginx and slow answer streams across the switch; no request
fails, every stream ends with `done`, nginx keeps running, the new release serves the API
and the browser app; a second update with nothing new changes nothing.

Run with `make test-compose` (root; it installs Debian's docker.io and docker-compose and
makes the test bridge 10.99.0.1 that pebble listens on: `scripts/testhost.sh network`).
The first run builds the images (about 10 min: Debian's torch); later runs reuse Docker's
layer cache. The update adds about 3 min (the second release's frontend build, its app
image layers, the new container's start and the old one's drain).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fakes.anthropic_server import FakeAnthropicServer, Script
from tests.infra import kt_target
from tests.infra.kt_target import Response, ok_json

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "scripts" / "compose.sh"
DOCKERD = REPO / "scripts" / "compose_dockerd.sh"
PEBBLE = REPO / "scripts" / "pebble.sh"
STATE_DIR = Path(os.environ.get("KT_TESTHOST_STATE", "/var/lib/knowledgetree-testhost"))
PEBBLE_STATE = STATE_DIR / "pebble"
BRIDGE_ADDRESS = "10.99.0.1"
DOMAIN = "compose.knowledgetree.test"
PROJECT = "kt-compose-test"
HTTPS_PORT = 18443
HTTP_PORT = 18080
SAMPLE = REPO / "samples" / "corpus" / "honeybees.md"
QUESTION = "How do honey bees tell each other where the flowers are?"
ANSWER = "Bees dance to show the way [1]."
PASSWORD = "correct horse battery staple"
RESULTS_FILE = STATE_DIR / "results" / "compose.json"
# The update's second release: the same sources under another name (build_release.sh).
UPDATE_SUFFIX = "compose-update"
# Load during the update: GETs of the API and of the browser app through nginx (each
# path REQUESTS_PER_SECOND times a second), and answer streams opened from the new app
# container's start until nginx has switched: STREAMS_FIRST at once, then one every
# STREAM_INTERVAL s (under nginx's 30 a minute). Each lasts about 24 s (48 tokens 0.5 s
# apart): those opened in the seconds before the switch are still open on the old
# container when it gets SIGTERM, and end inside its 30 s drain.
REQUESTS_PER_SECOND = 6
STREAMS_FIRST = 3
STREAM_INTERVAL = 3.0
# As test_bluegreen's client. Over HTTP/2 a request on a connection opened just as nginx's
# reload retires its worker can be cut (curl: "Error in the HTTP2 framing layer", once in
# 2,504 requests here); docs/DEPLOYMENT.md says so.
HTTP_1_1 = ("--http1.1",)
SLOW_MARKER = "[compose-update]"
SLOW_ANSWER = " ".join(f"word{i}" for i in range(48))
TOKEN_DELAY = 0.5


def missing_requirement() -> str | None:
    if os.geteuid() != 0:
        return "needs root (it starts dockerd)"
    for tool in ("dockerd", "docker-compose", "pebble", "zstd"):
        if not shutil.which(tool):
            return f"{tool} is not installed (apt-get install docker.io docker-compose pebble zstd)"
    address = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    if f" {BRIDGE_ADDRESS}/" not in address:
        return f"no test bridge {BRIDGE_ADDRESS} for pebble: run scripts/testhost.sh up once"
    return None


MISSING = missing_requirement()
# `make test` installs what the test needs first (scripts/test_infra.sh), so there a
# skip would hide a broken set-up: KT_COMPOSE_REQUIRED=1 turns it into a failure.
if MISSING and os.environ.get("KT_COMPOSE_REQUIRED") == "1":
    raise RuntimeError(f"the compose test cannot run: {MISSING}")
pytestmark = [
    pytest.mark.skipif(MISSING is not None, reason=str(MISSING)),
    # The first fixture builds the images: on a new machine about 10-20 min (Debian's
    # torch), far over the suite's default 300 s per test.
    pytest.mark.timeout(2700),
]


def firewall() -> tuple[str, str]:
    """The test hosts' NAT table and iptables' FORWARD chain (dockerd must not touch them)."""
    nft = subprocess.run(
        ["nft", "list", "table", "ip", "knowledgetree_testhost"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    forward = subprocess.run(
        ["iptables", "-S", "FORWARD"], check=True, capture_output=True, text=True
    )
    return nft.stdout, forward.stdout


class Stack:
    def __init__(self, env_file: Path, firewall_before: tuple[str, str]) -> None:
        self.env = {
            **os.environ,
            "KT_COMPOSE_ENV": str(env_file),
            "KT_COMPOSE_PROJECT": PROJECT,
            "KT_COMPOSE_FILES": "docker-compose.prod.yml:tests/compose/docker-compose.test.yml",
            "KT_PEBBLE_LISTENER_CA": str(PEBBLE_STATE / "listener-ca.pem"),
        }
        self.env_file = env_file
        self.firewall_before = firewall_before

    def script(self, *args: str) -> str:
        done = subprocess.run(
            [str(COMPOSE), *args], cwd=REPO, env=self.env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"compose.sh {' '.join(args)}:\n{done.stderr[-4000:]}"
        return done.stdout

    def compose(self, *args: str) -> str:
        return subprocess.run(
            ["docker-compose", "--project-name", PROJECT, "--env-file", str(self.env_file),
             "--file", "docker-compose.prod.yml", "--file", "tests/compose/docker-compose.test.yml",
             *args],
            cwd=REPO, env=self.env, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip

    def container(self, service: str) -> dict:
        ids = self.compose("ps", "-q", service).split()
        assert len(ids) == 1, (service, ids)
        out = subprocess.run(
            ["docker", "inspect", ids[0]], check=True, capture_output=True, text=True
        ).stdout
        return json.loads(out)[0]

    def start(self) -> None:
        """scripts/compose.sh up, then the test domain at nginx's container for pebble's
        HTTP-01 check, then wait for the HTTPS server with certbot's certificate."""
        self.script("up")
        networks = self.container("nginx")["NetworkSettings"]["Networks"]
        address = next(iter(networks.values()))["IPAddress"]
        subprocess.run([str(PEBBLE), "dns", DOMAIN, address], check=True, capture_output=True)
        deadline = time.monotonic() + 300
        while True:
            try:
                if curl("/readyz").status == 200:
                    return
            except subprocess.CalledProcessError:
                pass
            assert time.monotonic() < deadline, self.compose(
                "logs", "--tail=40", "certbot", "nginx"
            )
            time.sleep(2)


# The compose nginx by the test domain on loopback, through the infra suite's curl helpers.
SITE = (DOMAIN, "127.0.0.1")


def curl(path: str, *extra: str, stream: bool = False) -> Response:
    """One HTTPS request to nginx by the test domain, verified against pebble's root."""
    options = ("--no-buffer", *extra) if stream else extra
    return kt_target.curl(path, extra=options, site=SITE, port=HTTPS_PORT, max_time=60)


def api(method: str, path: str, **kwargs) -> Response:
    return kt_target.api(method, path, site=SITE, port=HTTPS_PORT, max_time=60, **kwargs)


def login(email: str) -> str:
    return ok_json(api("POST", "/auth/login", body={"email": email, "password": PASSWORD}), 200)[
        "access_token"
    ]


@pytest.fixture(scope="module")
def anthropic():
    server = FakeAnthropicServer()
    server.default = Script(text=ANSWER)
    server.start(host=BRIDGE_ADDRESS)  # the containers reach the machine on the bridge
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, anthropic):
    before = firewall()
    env_file = tmp_path_factory.mktemp("compose") / "knowledgetree.env"
    env_file.touch(mode=0o600)
    env_file.write_text(
        f"KT_DOMAIN={DOMAIN}\n"
        f"SECRET_KEY={uuid.uuid4().hex}{uuid.uuid4().hex}\n"
        f"KT_DB_OWNER_PASSWORD=owner/{uuid.uuid4().hex}\n"
        f"KT_DB_APP_PASSWORD=app@{uuid.uuid4().hex}%\n"
        "KT_BASE_IMAGE=knowledgetree/debian:trixie\n"
        f"KT_HTTP_BIND=127.0.0.1:{HTTP_PORT}\n"
        f"KT_HTTPS_BIND=127.0.0.1:{HTTPS_PORT}\n"
        f"KT_ACME_SERVER=https://{BRIDGE_ADDRESS}:14000/dir\n"
        "KT_CERTBOT_RETRY_SECONDS=5\n"
        "ANTHROPIC_API_KEY=sk-ant-compose-test\n"
        f"ANTHROPIC_BASE_URL={anthropic.base_url}\n"
    )
    subprocess.run([str(DOCKERD), "start"], check=True)
    stack = Stack(env_file, before)
    try:
        pebble = subprocess.run([str(PEBBLE), "start"], capture_output=True, text=True)
        assert pebble.returncode == 0, pebble.stderr
        stack.compose("down", "--volumes", "--remove-orphans")  # a clean start
        stack.start()
        yield stack
    finally:
        try:
            stack.compose("down", "--volumes", "--remove-orphans")
        finally:
            subprocess.run([str(DOCKERD), "stop"], check=True)


@pytest.fixture(scope="module")
def journey(stack, anthropic) -> dict:
    """A user with a project and a ready document, through nginx over HTTPS."""
    email = f"compose-{uuid.uuid4().hex[:8]}@example.com"
    ok_json(api("POST", "/auth/register", body={"email": email, "password": PASSWORD}), 202)
    token = login(email)
    project = ok_json(api("POST", "/projects", token=token, body={"name": "Bees"}), 201)
    uploaded = ok_json(api(
        "POST", f"/projects/{project['id']}/documents", token=token,
        form=(f"files=@{SAMPLE};type=text/markdown",),
    ), 202)  # fmt: skip
    document_url = f"/projects/{project['id']}/documents/{uploaded[0]['id']}"
    deadline = time.monotonic() + 300
    while True:
        document = ok_json(api("GET", document_url, token=token), 200)
        if document["status"] in ("ready", "failed") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert (document["status"], document["error"]) == ("ready", None)
    return {"email": email, "token": token, "project": project["id"], "document": document_url}


def read_stream(token: str, body: dict) -> list[tuple[str, dict]]:
    response = curl(
        "/api/chat/stream", "-H", f"Authorization: Bearer {token}",
        "-H", "Content-Type: application/json", "--data", json.dumps(body), stream=True,
    )  # fmt: skip
    assert response.status == 200, response.body[:500]
    assert response.headers["content-type"].startswith("text/event-stream")
    return kt_target.sse_events(response.body.decode())


def test_nginx_serves_the_release_over_https_with_the_templates_headers(stack):
    page = curl("/")
    assert page.status == 200
    assert b'name="knowledgetree-release"' in page.body
    assert page.headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    plain = kt_target.curl("/projects", scheme="http", site=SITE, port=HTTP_PORT)
    assert plain.status == 301


def test_a_document_is_ready_and_the_chat_streams_an_answer_with_sources(journey, anthropic):
    events = read_stream(journey["token"], {"message": QUESTION, "project_id": journey["project"]})
    names = [name for name, _ in events]
    assert names[:2] == ["conversation", "sources"], names
    assert names[-1] == "done", events[-1]
    sources = dict(events)["sources"]["sources"]
    assert sources and sources[0]["document_name"] == SAMPLE.name
    assert "".join(data["text"] for name, data in events if name == "token") == ANSWER
    assert anthropic.requests, "the app never reached the Anthropic stand-in"
    journey["conversation"] = dict(events)["conversation"]["conversation_id"]


def test_the_containers_run_hardened_and_hold_no_secret(stack):
    secrets = [
        line.partition("=")[2]
        for line in stack.env_file.read_text().splitlines()
        if line.startswith(("SECRET_KEY=", "KT_DB_OWNER_PASSWORD=", "KT_DB_APP_PASSWORD="))
    ]
    for service in ("db", "app", "frontend", "nginx", "certbot"):
        info = stack.container(service)
        assert info["HostConfig"]["ReadonlyRootfs"], service
        assert "no-new-privileges:true" in info["HostConfig"]["SecurityOpt"], service
        image = subprocess.run(
            ["docker", "image", "inspect", info["Image"]],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        history = subprocess.run(
            ["docker", "history", "--no-trunc", info["Image"]],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        for secret in secrets:
            assert secret not in image and secret not in history, service
    assert stack.container("app")["Config"]["User"] == "knowledgetree"
    assert stack.container("db")["Config"]["User"] == "postgres"
    assert stat.S_IMODE(stack.env_file.stat().st_mode) == 0o600


def test_the_data_survives_down_and_up(stack, journey):
    assert "conversation" in journey, "the chat test did not run"
    stack.compose("down")
    stack.start()
    token = login(journey["email"])
    assert ok_json(api("GET", journey["document"], token=token), 200)["status"] == "ready"
    saved = ok_json(api("GET", f"/conversations/{journey['conversation']}", token=token), 200)
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant"]
    assert saved["messages"][1]["content"] == ANSWER


def served_release(page: bytes) -> str:
    """The release named in index.html (scripts/build_release.sh writes it there)."""
    marker = b'name="knowledgetree-release" content="'
    return page.partition(marker)[2].partition(b'"')[0].decode() or "(no release named)"


@dataclass
class Load:
    """GET /api/version and / through nginx at a steady rate, and answer streams."""

    token: str
    project_id: str
    sent: int = 0
    failed: list[str] = field(default_factory=list)
    served: list[tuple[float, str, str]] = field(default_factory=list)  # (at, path, release)
    streams: list[dict] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self.threads.append(thread)

    def requests(self, path: str) -> None:
        interval = 1 / REQUESTS_PER_SECOND
        next_at = time.monotonic()
        while not self.stop.is_set():
            self.sent += 1
            try:
                response = curl(path, *HTTP_1_1)
            except subprocess.CalledProcessError as error:
                self.failed.append(f"{time.time():.1f} {path}: curl {error.returncode} "
                                   f"{error.stderr.decode(errors='replace').strip()}")  # fmt: skip
            else:
                if response.status != 200:
                    self.failed.append(f"{time.time():.1f} {path}: HTTP {response.status}")
                elif path == "/":
                    self.served.append((time.time(), path, served_release(response.body)))
                else:
                    self.served.append((time.time(), path, json.loads(response.body)["version"]))
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    def stream(self) -> None:
        record: dict = {"opened": time.time(), "events": [], "error": None}
        self.streams.append(record)
        body = {"message": f"{SLOW_MARKER} {QUESTION}", "project_id": self.project_id}
        try:
            response = curl(
                "/api/chat/stream", *HTTP_1_1, "-H", f"Authorization: Bearer {self.token}",
                "-H", "Content-Type: application/json", "--data", json.dumps(body), stream=True,
            )  # fmt: skip
            record["status"] = response.status
            record["events"] = [name for name, _ in kt_target.sse_events(response.body.decode())]
        except subprocess.CalledProcessError as error:
            record["error"] = f"curl {error.returncode}: {error.stderr.decode(errors='replace')}"
        record["closed"] = time.time()

    def streams_until(self, until: threading.Event) -> None:
        for _ in range(STREAMS_FIRST):
            self.start(self.stream)
        while not until.wait(STREAM_INTERVAL):
            self.start(self.stream)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=180)

    def broken_streams(self) -> list[dict]:
        return [
            {k: v for k, v in s.items() if k != "events"} | {"last": s["events"][-3:]}
            for s in self.streams
            if s["error"] or s.get("status") != 200 or s["events"][-1:] != ["done"]
            or "error" in s["events"]
        ]  # fmt: skip


@pytest.fixture(scope="module")
def second_release() -> Path:
    """A second release of the same sources, built once: both updates stage this folder
    (KT_COMPOSE_RELEASE), whatever changes in the working tree meanwhile."""
    built = subprocess.run(
        [str(REPO / "scripts" / "build_release.sh")], cwd=REPO,
        env={**os.environ, "KT_RELEASE_SUFFIX": UPDATE_SUFFIX}, capture_output=True, text=True,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    return Path(built.stdout.strip())


def update_under_load(
    stack: Stack, release: Path, load: Load
) -> tuple[subprocess.CompletedProcess, dict]:
    """`compose.sh update` to `release` while `load` runs; the moments of its stages
    (from its log lines) by name."""
    env = {**stack.env, "KT_COMPOSE_RELEASE": str(release)}
    stages = {
        "starting the new app container": "new_started",
        "switching nginx to it": "switching",
        "stopping the old app container": "old_stopping",
        "the old app container is stopped": "old_stopped",
    }
    moments: dict[str, float] = {"command": time.time()}
    until_switched = threading.Event()
    process = subprocess.Popen(
        [str(COMPOSE), "update"], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    output = []
    for line in process.stdout:
        output.append(line)
        for text, stage in stages.items():
            if text in line and stage not in moments:
                moments[stage] = time.time()
                if stage == "new_started":
                    load.start(load.streams_until, until_switched)
                if stage == "old_stopping":
                    until_switched.set()
    until_switched.set()
    moments["done"] = time.time()
    done = subprocess.CompletedProcess(process.args, process.wait(), "".join(output), "")
    return done, moments


def running(stack: Stack, service: str) -> tuple[str, str]:
    info = stack.container(service)
    return info["Id"], info["State"]["StartedAt"]


def test_an_update_replaces_the_app_under_load_without_a_failed_request(
    stack, journey, anthropic, second_release
):
    token = login(journey["email"])
    anthropic.route(SLOW_MARKER, Script(text=SLOW_ANSWER, token_delay=TOKEN_DELAY))
    nginx_before, app_before = running(stack, "nginx"), running(stack, "app")
    release_before = ok_json(api("GET", "/version"), 200)["version"]
    load = Load(token, journey["project"])
    for path in ("/api/version", "/"):
        load.start(load.requests, path)
    done, moments = update_under_load(stack, second_release, load)
    time.sleep(3)  # requests after the update, on the new release
    load.finish()
    assert done.returncode == 0, done.stdout[-4000:]
    new_release = (second_release / "RELEASE").read_text().strip()
    assert new_release != release_before
    # Opened before nginx switched (so on the old container), still open at its SIGTERM.
    drained = [
        s for s in load.streams
        if s["opened"] < moments["switching"] and s.get("closed", 0) > moments["old_stopping"]
    ]  # fmt: skip
    figures = {
        "seconds": round(moments["done"] - moments["command"], 1),
        "seconds_to_new_container_healthy": round(moments["switching"] - moments["new_started"], 1),
        "seconds_nginx_switch": round(moments["old_stopping"] - moments["switching"], 1),
        "seconds_old_container_drain": round(moments["old_stopped"] - moments["old_stopping"], 1),
        "requests_sent": load.sent,
        "requests_failed": len(load.failed),
        "streams_opened": len(load.streams),
        "streams_done": sum(1 for s in load.streams if s["events"][-1:] == ["done"]),
        "streams_drained_on_the_old_container": len(drained),
        # 0: it ended by itself after the drain; 137: docker stop killed it after 45 s.
        "old_container_exit": re.findall(r"stopped \(exit status ([0-9 ]+)\)", done.stdout),
    }
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(json.dumps({"compose_update": figures}, indent=2) + "\n")
    print(f"\n[compose result] compose_update = {figures}")
    assert load.failed == [], load.failed[:20]
    assert load.broken_streams() == [], load.broken_streams()
    # Streams the old container carried through nginx's switch and its own SIGTERM.
    assert drained, (moments, [(s["opened"], s.get("closed")) for s in load.streams])
    # Afterwards the new release answers, the API and the browser app, and nginx is the
    # same container, never restarted; the old app container is gone.
    after = {path: {r for at, p, r in load.served if p == path and at > moments["done"]}
             for path in ("/api/version", "/")}  # fmt: skip
    assert after == {"/api/version": {new_release}, "/": {new_release}}, after
    assert running(stack, "nginx") == nginx_before
    assert running(stack, "app")[0] != app_before[0]


def test_a_second_update_without_changes_changes_nothing(stack, second_release):
    before = {service: running(stack, service) for service in ("app", "nginx", "certbot")}
    page = curl("/").body
    env = {**stack.env, "KT_COMPOSE_RELEASE": str(second_release)}
    done = subprocess.run(
        [str(COMPOSE), "update"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "runs this release and configuration already" in done.stderr
    assert "is live already" in done.stderr
    assert {service: running(stack, service) for service in before} == before
    assert curl("/").body == page
    assert curl("/readyz").status == 200


def test_dockerd_left_the_firewall_alone(stack):
    """dockerd runs without its iptables rules: the test hosts' NAT and forwarding stay."""
    nft, forward = firewall()
    assert nft == stack.firewall_before[0]
    assert forward == stack.firewall_before[1]
    assert "-P FORWARD ACCEPT" in forward
    ruleset = subprocess.run(["nft", "list", "ruleset"], check=True, capture_output=True, text=True)
    assert "DOCKER" not in ruleset.stdout

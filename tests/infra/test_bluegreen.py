"""Blue-green releases under load: no failed request, no broken answer stream.

On the main suite's provisioned host (blue live with the session's release):

1. A second release of the same sources (``KT_RELEASE_SUFFIX``) is deployed while a
   load generator sends ~20 requests/s through nginx and chat streams stay open across
   the switch. The app talks to the Anthropic stand-in (tests/fakes) on the machine,
   streaming slowly, so an answer lasts longer than the switch. Every request answers
   200, every stream ends with ``done``, and requests after the switch are served by the
   new release (``GET /api/version``).
   The host's process list, sampled every 0.5 s through the deploy, shows no secret of
   the app's environment files (issue 14: secrets never on a command line).
2. ``ansible/rollback.yml`` the same way, back to the first release (blue live again,
   as the rest of the suite expects), its browser app (index.html) included.
3. A release that cannot reach the database fails its health gate: the deploy stops
   with a clear message, the live colour and every request are untouched.
4. ``kill -9`` of the live app: systemd restarts it; how long requests fail is recorded.
5. Deploying the live release again changes nothing; a second deploy while one holds the
   lock is refused.

Adds about 9 minutes to the infra run on a loaded machine (measured: a venv install of
the second release, two health gates and drains, one failed gate, one restart).
"""

from __future__ import annotations

import base64
import calendar
import contextlib
import json
import os
import re
import shlex
import socket
import ssl
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import kt_target
import pytest
from conftest import BUILD_RELEASE_SCRIPT, REPO, ansible_env, record_result, run_playbook

DEPLOY_PLAYBOOK = REPO / "ansible" / "deploy.yml"
ROLLBACK_PLAYBOOK = REPO / "ansible" / "rollback.yml"
SAMPLE = REPO / "samples" / "corpus" / "honeybees.md"
ENV_FILE = "/etc/knowledgetree/knowledgetree.env"
OWNER_ENV_FILE = "/etc/knowledgetree/knowledgetree-owner.env"
STATE_FILE = "/opt/knowledgetree/live.json"
BRIDGE_ADDRESS = "10.99.0.1"
REQUESTS_PER_SECOND = 20
# Streams are opened from the health gate until the drain: first as many as nginx lets
# one address open at once (1 + nginx_chat_burst), then one every STREAM_INTERVAL s, under
# nginx's 30 a minute. Each lasts about 60 s (120 tokens, 0.5 s apart), so however long the
# gate takes, a dozen or more are open when nginx switches, and they end during the drain.
FIRST_STREAMS = 11
STREAM_INTERVAL = 3.0
ANSWER = " ".join(f"word{i}" for i in range(120))
TOKEN_DELAY = 0.5
# The playbook's stages, as their task names appear in its output.
GATE_TASK = "Start the idle color and wait for its /readyz"
# Starts right after nginx's reload: from the command to this line, the rollback figure.
SERVING_TASK = "Note when the new color took over"
DRAIN_TASK = "Drain and stop the old color"

api = kt_target.api
ok_json = kt_target.ok_json


def sudo(host, command: str) -> str:
    with host.sudo():
        return host.check_output(command)


def live_state(host) -> dict:
    return json.loads(sudo(host, f"cat {STATE_FILE}"))


def env_file_secrets(host) -> dict[str, str]:
    """The secret values of the app's environment files: *_KEY, *_SECRET and *_DSN
    settings and the database passwords (as written in DATABASE_URL, and decoded)."""
    secrets = {}
    for path in (ENV_FILE, OWNER_ENV_FILE):
        for line in sudo(host, f"cat {path}").splitlines():
            name, _, value = line.partition("=")
            value, label = value.strip("'"), f"{Path(path).name} {name}"
            if name == "DATABASE_URL":
                password = urlsplit(value).password or ""
                secrets[label], secrets[f"{label} (decoded)"] = password, unquote(password)
            elif name.endswith(("_KEY", "_SECRET", "_DSN")):
                secrets[label] = value  # a later line wins, as in systemd
    return {label: value for label, value in secrets.items() if value}


class ProcessLists:
    """The host's process list (command lines) about every 0.5 s, over one ssh connection."""

    LOOP = "while ps -eww -o pid=,args=; do echo --; sleep 0.5; done"

    def __init__(self, ssh_config: Path, address: str) -> None:
        self.samples: list[str] = []
        self.ssh = subprocess.Popen(
            ["ssh", "-F", str(ssh_config), address, f"sudo sh -c {shlex.quote(self.LOOP)}"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.ssh.stdout is not None
        sample: list[str] = []
        for line in self.ssh.stdout:
            if line == "--\n":
                self.samples.append("".join(sample))
                sample = []
            else:
                sample.append(line)

    def stop(self) -> list[str]:
        self.ssh.terminate()  # the remote loop ends at its next write
        self.reader.join(timeout=30)
        return self.samples


class Forwarder:
    """TCP forwarding from the bridge address to the stand-in on loopback (the stand-in
    only binds 127.0.0.1; the test host reaches the machine on the bridge)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server((BRIDGE_ADDRESS, 0))
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.closed = True
        self.listener.close()


def restart_live_color(host) -> None:
    color = live_state(host)["color"]
    port = {"blue": 8001, "green": 8002}[color]
    sudo(host, f"systemctl restart knowledgetree@{color}")
    sudo(
        host,
        "curl -sf -o /dev/null --retry 180 --retry-delay 1 --retry-all-errors "
        f"http://127.0.0.1:{port}/readyz",
    )


@pytest.fixture(scope="module")
def slow_model(host):
    """The live app answers through the Anthropic stand-in, slowly; put back afterwards."""
    server = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "tests.fakes.anthropic_server",
         "--text", ANSWER, "--token-delay", str(TOKEN_DELAY)],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    base_url = server.stdout.readline().strip()
    forwarder = Forwarder(int(base_url.rsplit(":", 1)[1]))
    settings = (
        "ANTHROPIC_API_KEY='sk-ant-bluegreen-test'\n"
        f"ANTHROPIC_BASE_URL='http://{BRIDGE_ADDRESS}:{forwarder.port}'\n"
    )
    sudo(host, f"cp -p {ENV_FILE} {ENV_FILE}.bluegreen")
    encoded = base64.b64encode(settings.encode()).decode()
    sudo(host, f"sh -c 'echo {encoded} | base64 -d >> {ENV_FILE}'")
    restart_live_color(host)
    yield base_url
    sudo(host, f"mv {ENV_FILE}.bluegreen {ENV_FILE}")
    restart_live_color(host)
    forwarder.close()
    server.communicate(input="", timeout=30)  # it stops when its stdin closes


def new_chat_user() -> tuple[str, str]:
    """A user's token and a project with one ready document (a user per switch: each
    stream is an answer on the Free plan's monthly allowance)."""
    credentials = {"email": f"bluegreen-{uuid.uuid4().hex[:8]}@example.com",
                   "password": "correct horse battery staple"}  # fmt: skip
    ok_json(api("POST", "/auth/register", body=credentials), 202)
    token = ok_json(api("POST", "/auth/login", body=credentials), 200)["access_token"]
    project = ok_json(api("POST", "/projects", token=token, body={"name": "Bees"}), 201)
    uploaded = ok_json(
        api("POST", f"/projects/{project['id']}/documents", token=token,
            form=(f"files=@{SAMPLE};type=text/markdown",)),
        202,
    )  # fmt: skip
    document_url = f"/projects/{project['id']}/documents/{uploaded[0]['id']}"
    deadline = time.monotonic() + 180
    while ok_json(api("GET", document_url, token=token), 200)["status"] != "ready":
        assert time.monotonic() < deadline, "the sample document never became ready"
        time.sleep(1)
    return token, project["id"]


@pytest.fixture(scope="module")
def releases(release: str) -> tuple[str, str]:
    """(the session's release folder, a second release of the same sources)."""
    first = release.split("=", 1)[1]
    built = subprocess.run(
        [str(BUILD_RELEASE_SCRIPT)],
        cwd=REPO,
        env={**os.environ, "KT_RELEASE_SUFFIX": "bluegreen"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return first, built.stdout.strip()


def release_name(folder: str) -> str:
    return (Path(folder) / "RELEASE").read_text().strip()


@dataclass
class Load:
    """Requests through nginx (GET /api/version) at a steady rate, and chat streams."""

    token: str
    project_id: str
    sent: int = 0
    failed: list[str] = field(default_factory=list)
    versions: list[tuple[float, str]] = field(default_factory=list)
    streams: list[dict] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def client(self) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(kt_target.PEBBLE_ISSUER_ROOT))
        return httpx.Client(
            base_url=f"https://{kt_target.address()}",
            headers={"Host": kt_target.domain()},
            verify=context,
            timeout=httpx.Timeout(30, read=120),
        )

    def start_requests(self) -> None:
        thread = threading.Thread(target=self._requests, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _requests(self) -> None:
        interval = 1 / REQUESTS_PER_SECOND
        next_at = time.monotonic()
        with self.client() as client:
            while not self.stop.is_set():
                self.sent += 1
                try:
                    response = client.get(
                        "/api/version", extensions={"sni_hostname": kt_target.domain()}
                    )
                    if response.status_code == 200:
                        self.versions.append((time.time(), response.json()["version"]))
                    else:
                        self.failed.append(f"{time.time():.1f} HTTP {response.status_code}")
                except httpx.HTTPError as error:
                    self.failed.append(f"{time.time():.1f} {type(error).__name__}: {error}")
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))

    def open_stream(self) -> None:
        record: dict = {"events": [], "error": None, "opened": time.time()}
        self.streams.append(record)
        thread = threading.Thread(target=self._stream, args=(record,), daemon=True)
        thread.start()
        self.threads.append(thread)

    def start_streams(self, until: threading.Event) -> None:
        """FIRST_STREAMS now, then one every STREAM_INTERVAL s until `until` is set."""

        def run() -> None:
            for _ in range(FIRST_STREAMS):
                self.open_stream()
                time.sleep(0.05)
            while not until.wait(STREAM_INTERVAL):
                self.open_stream()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _stream(self, record: dict) -> None:
        try:
            with (
                self.client() as client,
                client.stream(
                    "POST",
                    "/api/chat/stream",
                    headers={"Authorization": f"Bearer {self.token}"},
                    json={"message": "How do bees find flowers?", "project_id": self.project_id},
                    extensions={"sni_hostname": kt_target.domain()},
                ) as response,
            ):
                record["status"] = response.status_code
                event = None
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                        record["events"].append(event)
        except httpx.HTTPError as error:
            record["error"] = f"{type(error).__name__}: {error}"
        record["closed"] = time.time()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=180)

    def streams_open_at(self, moment: float) -> int:
        return sum(1 for s in self.streams if s["opened"] < moment < s.get("closed", 0))

    def broken_streams(self) -> list[dict]:
        return [
            {k: v for k, v in s.items() if k != "events"}
            | {"last": s["events"][-3:], "tokens": s["events"].count("token")}
            for s in self.streams
            if s["error"]
            or s.get("status") != 200
            or not s["events"]
            or s["events"][-1] != "done"
            or "error" in s["events"]
        ]


# Proportional set size (kB) of each colour and of Postgres (the processes of their units'
# cgroups; cgroup v2 at /sys/fs/cgroup or, in a hybrid test host, /sys/fs/cgroup/unified),
# then of every process of the host: the guest's /proc/meminfo is the machine's, and
# nspawn keeps no memory accounting of the units.
MEMORY_PROBE = r"""
pss() { cat "$@" 2>/dev/null | awk '/^Pss:/ {kb += $2} END {print kb + 0}'; }
for unit in knowledgetree@blue knowledgetree@green postgresql@17-main; do
  cg=$(systemctl show --value --property=ControlGroup "$unit")
  procs=""
  for root in /sys/fs/cgroup /sys/fs/cgroup/unified; do
    [ -n "$cg" ] && [ -f "$root$cg/cgroup.procs" ] && procs=$(cat "$root$cg/cgroup.procs")
  done
  files=/dev/null
  for pid in $procs; do files="$files /proc/$pid/smaps_rollup"; done
  pss $files
done
pss /proc/[0-9]*/smaps_rollup
"""


def sample_memory(host, stop: threading.Event, samples: list[dict]) -> None:
    """MiB of each colour, Postgres, and the whole host, every second until stopped."""
    while not stop.is_set():
        try:
            values = sudo(host, f"sh -c {shlex.quote(MEMORY_PROBE)}").split()
            mib = [int(v) // 1024 for v in values[:3]]
            samples.append(
                {"blue": mib[0], "green": mib[1], "postgres": mib[2],
                 "host_pss": int(values[3]) // 1024}
            )  # fmt: skip
        except Exception:  # a missed sample is not a test failure
            pass
        stop.wait(1)


def peak_memory(samples: list[dict]) -> dict:
    if not samples:
        return {}
    peak = max(samples, key=lambda s: s["blue"] + s["green"] + s["postgres"])
    return {
        "apps_and_postgres_mib": peak["blue"] + peak["green"] + peak["postgres"],
        "at_that_moment": peak,
        "host_pss_peak_mib": max(s["host_pss"] for s in samples),
    }


def switch_under_load(host, playbook: Path, *args: str) -> tuple:
    """Run a deploy or rollback while requests and streams go through nginx: the streams
    are opened from the health gate on, so they straddle the switch."""
    token, project_id = new_chat_user()
    load = Load(token, project_id)
    load.start_requests()
    time.sleep(2)
    memory: list[dict] = []
    memory_stop = threading.Event()
    sampler = threading.Thread(target=sample_memory, args=(host, memory_stop, memory))
    sampler.start()
    started = time.monotonic()
    process = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", kt_target.INVENTORY,
         str(playbook), *args],
        cwd=REPO, env=ansible_env() | {"PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    output = []
    streaming = False
    to_serve = None
    draining = threading.Event()
    assert process.stdout is not None
    for line in process.stdout:
        output.append(line)
        if GATE_TASK in line and not streaming:
            load.start_streams(until=draining)
            streaming = True
        if SERVING_TASK in line and to_serve is None:
            to_serve = round(time.monotonic() - started, 1)
        if DRAIN_TASK in line:
            draining.set()
    draining.set()
    process.wait()
    seconds = round(time.monotonic() - started, 1)
    ended = time.time()
    time.sleep(3)  # requests after the switch, on the new release
    load.finish()
    memory_stop.set()
    sampler.join()
    return (
        process.returncode,
        "".join(output),
        seconds,
        to_serve,
        ended,
        load,
        peak_memory(memory),
    )


def check_switch(name: str, rc: int, output: str, seconds: float, to_serve: float | None,
                 ended: float, load: Load, memory: dict, host,
                 new_release: str) -> dict:  # fmt: skip
    assert rc == 0, output[-4000:]
    state = live_state(host)
    entry = state["history"][0]
    switched_at = calendar.timegm(time.strptime(entry["serving_at"], "%Y-%m-%dT%H:%M:%SZ"))
    figures = {
        "playbook_seconds": seconds,
        # From the command (ansible-playbook started) to nginx serving the new colour;
        # seconds_to_serve is the part from the colour's start (live.json).
        "seconds_command_to_serve": to_serve,
        "seconds_to_serve": float(entry["seconds_to_serve"]),
        "seconds_to_drain": float(entry["seconds_to_drain"]),
        "requests_sent": load.sent,
        "requests_failed": len(load.failed),
        "streams_opened": len(load.streams),
        "streams_completed": sum(1 for s in load.streams if s["events"][-1:] == ["done"]),
        "streams_open_at_switch": load.streams_open_at(switched_at),
        "peak_memory": memory,
    }
    record_result(f"bluegreen_{name}", figures)
    assert load.failed == [], load.failed[:20]
    assert load.broken_streams() == []
    # The streams were open while nginx switched, and were drained, not cut.
    assert figures["streams_open_at_switch"] >= 10, figures
    assert state["release"] == new_release
    # Requests after the deploy are answered by the new release only.
    last = [version for at, version in load.versions if at > ended]
    assert last and set(last) == {new_release}
    return state


def served_index() -> bytes:
    response = kt_target.curl("/")
    assert response.status == 200
    return response.body


def test_deploy_and_rollback_under_load(host, slow_model, releases, ssh_config):
    first, second = releases
    first_name, second_name = release_name(first), release_name(second)
    first_index, second_index = (Path(r, "dist", "index.html").read_bytes() for r in releases)
    assert first_index != second_index  # each names its release (scripts/build_release.sh)
    before = live_state(host)
    assert before["release"] == first_name
    assert served_index() == first_index

    secrets = env_file_secrets(host)
    assert {"knowledgetree.env SECRET_KEY", "knowledgetree.env DATABASE_URL",
            "knowledgetree.env ANTHROPIC_API_KEY", "knowledgetree-owner.env DATABASE_URL",
            } <= secrets.keys(), secrets.keys()  # fmt: skip
    process_lists = ProcessLists(ssh_config, kt_target.address())
    try:
        run = switch_under_load(host, DEPLOY_PLAYBOOK, "-e", f"app_release_source={second}")
    finally:
        samples = process_lists.stop()
    record_result("bluegreen_deploy_process_list_samples", len(samples))
    assert len(samples) > 30, samples[-1:]  # a deploy lasts minutes
    assert [label for label, value in secrets.items() if any(value in s for s in samples)] == []
    state = check_switch("deploy", *run, host, second_name)
    assert state["color"] != before["color"]
    assert sudo(host, f"systemctl is-active knowledgetree@{before['color']} || true") == "inactive"
    assert served_index() == second_index

    run = switch_under_load(host, ROLLBACK_PLAYBOOK)
    state = check_switch("rollback", *run, host, first_name)
    assert state["color"] == before["color"]
    assert state["action"] == "rollback"
    # The first release's browser app again; a page of the second, loaded before the
    # rollback, still gets the hashed assets it names.
    assert served_index() == first_index
    assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', second_index.decode())
    assert assets, second_index  # else the loop below would check nothing
    for asset in assets:
        assert kt_target.curl(asset).status == 200, asset


def test_deploying_the_live_release_changes_nothing(host, releases):
    run = run_playbook(DEPLOY_PLAYBOOK, "-e", f"app_release_source={releases[0]}")
    assert run.rc == 0, run.tail()
    assert sum(counts["changed"] for counts in run.recap.values()) == 0, run.changed_tasks()


def test_a_second_deploy_is_refused_while_one_runs(host, releases):
    sudo(host, "sh -c 'echo \"deploy since 2026-01-01T00:00:00Z by someone on elsewhere\" "
               "> /opt/knowledgetree/deploy.lock'")  # fmt: skip
    try:
        run = run_playbook(DEPLOY_PLAYBOOK, "-e", f"app_release_source={releases[1]}")
    finally:
        sudo(host, "rm -f /opt/knowledgetree/deploy.lock")
    assert run.rc != 0
    assert "Another deploy is running on" in run.stdout
    assert "deploy since 2026-01-01T00:00:00Z by someone on elsewhere" in run.stdout
    assert live_state(host)["release"] == release_name(releases[0])


def test_a_release_that_fails_its_health_gate_changes_nothing(host, releases):
    """The idle colour gets a database address that goes nowhere: it never becomes ready."""
    before = live_state(host)
    idle = "green" if before["color"] == "blue" else "blue"
    idle_env = f"/etc/knowledgetree/{idle}.env"
    sudo(host, f"cp -p {idle_env} {idle_env}.bluegreen")
    nowhere = "DATABASE_URL=postgresql+asyncpg://kt@127.0.0.1:9/none"
    sudo(host, f"sh -c 'echo {nowhere} >> {idle_env}'")
    load = Load(token="", project_id="")
    load.start_requests()
    try:
        run = run_playbook(
            DEPLOY_PLAYBOOK, "-e", f"app_release_source={releases[1]}", "-e", "app_ready_timeout=20"
        )
    finally:
        load.finish()
        sudo(host, f"mv {idle_env}.bluegreen {idle_env}")
    assert run.rc != 0
    assert "Health gate failed: release" in run.stdout, run.tail()
    assert "nginx was not switched" in run.stdout
    assert live_state(host) == before
    assert sudo(host, f"systemctl is-active knowledgetree@{idle} || true") in ("inactive", "failed")
    assert sudo(host, "test -e /opt/knowledgetree/deploy.lock && echo held || echo free") == "free"
    assert load.failed == []
    assert {version for _, version in load.versions} == {before["release"]}


def test_systemd_restarts_a_killed_app(host):
    """kill -9 of the live colour: requests fail until systemd has it up again (recorded)."""
    color = live_state(host)["color"]
    load = Load(token="", project_id="")
    load.start_requests()
    time.sleep(1)
    pid = sudo(host, f"systemctl show --value --property=MainPID knowledgetree@{color}")
    sudo(host, f"kill -9 {pid}")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        time.sleep(1)
        last_failure = float(load.failed[-1].split()[0]) if load.failed else None
        if last_failure and load.versions and load.versions[-1][0] > last_failure:
            break
    time.sleep(2)
    load.finish()
    new_pid = sudo(host, f"systemctl show --value --property=MainPID knowledgetree@{color}")
    assert new_pid not in ("0", pid)
    failed_times = [float(line.split()[0]) for line in load.failed]
    outage = round(max(failed_times) - min(failed_times), 1) if failed_times else 0.0
    figures = {"requests_sent": load.sent, "requests_failed": len(load.failed)}
    record_result("bluegreen_kill9", figures | {"seconds_failing": outage})
    assert load.versions and load.versions[-1][0] > max(failed_times, default=0)

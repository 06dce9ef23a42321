"""Harness for the infrastructure tests: a fresh test host, provisioned twice.

One session = one disposable Debian 13 host (scripts/testhost.sh, systemd-nspawn):

1. ``testhost``: ``down`` then ``up`` (a fresh host from the cached root filesystem);
   torn down at the end of the session unless ``KT_KEEP_TESTHOST=1``.
2. ``provisioned``: starts pebble (the test ACME server) and points the test domain at
   the host, builds a release, runs ``ansible-playbook ansible/site.yml`` on the bare
   host, then a second time (plain strategy: it must change nothing). The runs (output,
   PLAY RECAP, duration) are kept for test_idempotence.py; every other test sees the
   provisioned host. (The opt-in Mitogen strategy, ``make provision FAST=1``, is run by
   test_drift.py, where it must put hand edits back.)
3. ``host``: a testinfra host logged in as the administrator (root login is off after
   provisioning); use ``with host.sudo():`` for root.

Tests only talk to loopback and to the 10.99.0.0/24 test hosts.

    .venv/bin/pytest tests/infra                      # the whole thing (~35 min, 5 hosts)
    KT_KEEP_TESTHOST=1 .venv/bin/pytest tests/infra   # keep the host for a look afterwards
    KT_REUSE_TESTHOST=1 .venv/bin/pytest tests/infra  # skip down/up: re-run on the kept host
    KT_RELEASE_REF=HEAD .venv/bin/pytest tests/infra  # deploy the last commit, not the work tree
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import kt_target
import pytest
import testinfra

REPO = Path(__file__).resolve().parents[2]
TESTHOST_SCRIPT = REPO / "scripts" / "testhost.sh"
PEBBLE_SCRIPT = REPO / "scripts" / "pebble.sh"
BUILD_RELEASE_SCRIPT = REPO / "scripts" / "build_release.sh"
SITE_PLAYBOOK = REPO / "ansible" / "site.yml"
STATE_DIR = kt_target.STATE_DIR
SSH_KEY = STATE_DIR / "id_ed25519"
KNOWN_HOSTS = STATE_DIR / "known_hosts"
# Measurements of the last session (provisioning times, Lynis index) for docs/BENCHMARKS.md.
RESULTS_FILE = STATE_DIR / "results" / "infra.json"

RECAP_LINE = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)\s+"
    r"rescued=(?P<rescued>\d+)\s+ignored=(?P<ignored>\d+)",
    re.MULTILINE,
)


# Provisioning a bare host takes minutes (apt, pip): far above the suite's 300 s default,
# and it happens inside the first test's fixture setup.
INFRA_TEST_TIMEOUT = 2400


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.timeout(INFRA_TEST_TIMEOUT))


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false", "no")


def ansible_env(*, mitogen: bool = False) -> dict[str, str]:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}",
    }
    if mitogen:
        # What `make ... FAST=1` sets (Makefile: ANSIBLE_STRATEGY_ENV).
        strategies = sorted(
            REPO.glob(".venv/lib/python3*/site-packages/ansible_mitogen/plugins/strategy")
        )
        assert strategies, "mitogen is not installed in .venv (pyproject.toml [dev])"
        env["ANSIBLE_STRATEGY"] = "mitogen_linear"
        env["ANSIBLE_STRATEGY_PLUGINS"] = str(strategies[0])
    return env


@dataclass
class PlaybookRun:
    """One ansible-playbook run: exit code, full output, PLAY RECAP per host, seconds."""

    command: list[str]
    rc: int
    stdout: str
    seconds: float
    recap: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def parse(cls, command: list[str], rc: int, stdout: str, seconds: float) -> PlaybookRun:
        # site.yml imports deploy.yml, so several PLAY RECAPs may be printed: add them up.
        recap: dict[str, dict[str, int]] = {}
        for match in RECAP_LINE.finditer(stdout):
            counts = recap.setdefault(match["host"], {})
            for key, value in match.groupdict().items():
                if key != "host":
                    counts[key] = counts.get(key, 0) + int(value)
        return cls(command, rc, stdout, seconds, recap)

    def changed_tasks(self) -> list[str]:
        """Names of the tasks that reported "changed" (for a readable failure)."""
        names, task = [], None
        for line in self.stdout.splitlines():
            if line.startswith("TASK ["):
                task = line[6 : line.rfind("]")]
            elif line.startswith("changed:") and task:
                names.append(task)
        return names

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.stdout.splitlines()[-lines:])


def run_playbook(
    playbook: str | Path, *args: str, inventory: str | None = None, mitogen: bool = False
) -> PlaybookRun:
    """Run a playbook against the test inventory, as a person would from the repo root."""
    command = [
        str(REPO / ".venv" / "bin" / "ansible-playbook"),
        "-i",
        inventory or kt_target.INVENTORY,
        str(playbook),
        *args,
    ]
    started = time.monotonic()
    proc = subprocess.run(
        command,
        cwd=REPO,
        env=ansible_env(mitogen=mitogen),
        capture_output=True,
        text=True,
        check=False,
    )
    run = PlaybookRun.parse(command, proc.returncode, proc.stdout + proc.stderr, 0.0)
    run.seconds = round(time.monotonic() - started, 1)
    return run


def testhost_script(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TESTHOST_SCRIPT), *args], capture_output=True, text=True, check=check
    )


def record_result(key: str, value) -> None:
    """Keep a measurement for docs/BENCHMARKS.md (and print it: run pytest with -s)."""
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    # The suite's lanes run at once (scripts/test_infra.sh): read, update, write in turn.
    with open(RESULTS_FILE.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(RESULTS_FILE.read_text()) if RESULTS_FILE.exists() else {}
        results[key] = value
        results["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        RESULTS_FILE.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n[infra result] {key} = {value}")


@dataclass
class TestHost:
    name: str
    address: str
    domain: str
    admin_user: str


@pytest.fixture(scope="session")
def testhost_info() -> TestHost:
    """Who the test host is, read from the inventory (never repeated here)."""
    host_vars = kt_target.host_vars()
    return TestHost(
        name=kt_target.HOST_NAME,
        address=host_vars["ansible_host"],
        domain=host_vars["kt_domain"],
        admin_user=host_vars["kt_admin_user"],
    )


@pytest.fixture(scope="session")
def testhost_up(testhost_info: TestHost):
    """A fresh, bare test host for this session; removed afterwards unless kept."""
    if os.geteuid() != 0:
        pytest.skip("the infra tests create containers and a bridge: run them as root")
    name, address = testhost_info.name, testhost_info.address
    if not _flag("KT_REUSE_TESTHOST"):
        testhost_script("down", name)
    started = time.monotonic()
    up = testhost_script("up", name, address, check=False)
    if up.returncode != 0:
        pytest.fail(f"scripts/testhost.sh up {name} {address} failed:\n{up.stderr}")
    record_result("testhost_boot_seconds", round(time.monotonic() - started, 1))
    yield testhost_info
    if _flag("KT_KEEP_TESTHOST"):
        print(f"\nKT_KEEP_TESTHOST=1: {name} ({address}) kept; `scripts/testhost.sh down {name}`")
    else:
        testhost_script("down", name, check=False)


@pytest.fixture(scope="session")
def acme_test_server(testhost_up: TestHost):
    """pebble on the bridge, with the test domain pointing at the test host."""
    subprocess.run([str(PEBBLE_SCRIPT), "start"], check=True, capture_output=True, text=True)
    subprocess.run(
        [str(PEBBLE_SCRIPT), "dns", testhost_up.domain, testhost_up.address],
        check=True,
        capture_output=True,
        text=True,
    )
    # Left running: other test hosts (the demo, a developer's) may be using it too.
    return testhost_up


@pytest.fixture(scope="session")
def release() -> str:
    """The `-e app_release_source=...` of this session's release: built once (reused when
    sources are unchanged) and named by its folder, not by build/release, which another
    build in the same checkout may repoint meanwhile."""
    built = subprocess.run(
        [str(BUILD_RELEASE_SCRIPT)], cwd=REPO, capture_output=True, text=True, check=False
    )
    if built.returncode != 0:
        pytest.fail(f"scripts/build_release.sh failed:\n{built.stderr[-3000:]}")
    return f"app_release_source={built.stdout.strip()}"


@dataclass
class Provisioning:
    first: PlaybookRun
    second: PlaybookRun


@pytest.fixture(scope="session")
def provisioned(acme_test_server: TestHost, release: str) -> Provisioning:
    """site.yml on the bare host, then once more (that run must change nothing)."""
    first = run_playbook(SITE_PLAYBOOK, "-e", release)
    record_result("provision_first_run_seconds", first.seconds)
    if first.rc != 0:
        pytest.fail(f"first site.yml run failed (rc={first.rc}):\n{first.tail(80)}")
    second = run_playbook(SITE_PLAYBOOK, "-e", release)
    record_result("provision_second_run_seconds", second.seconds)
    record_result(
        "provision_second_run_changed",
        sum(counts["changed"] for counts in second.recap.values()),
    )
    return Provisioning(first, second)


@pytest.fixture(scope="session")
def ssh_config(tmp_path_factory, testhost_up: TestHost) -> Path:
    """An ssh client configuration for the test host: admin user, its key, strict host keys."""
    path = tmp_path_factory.mktemp("ssh") / "config"
    path.write_text(
        f"Host {testhost_up.address}\n"
        f"  User {testhost_up.admin_user}\n"
        f"  IdentityFile {SSH_KEY}\n"
        "  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {KNOWN_HOSTS}\n"
        "  StrictHostKeyChecking yes\n"
        "  BatchMode yes\n"
        "  ConnectTimeout 10\n"
    )
    return path


@pytest.fixture(scope="session")
def host(provisioned: Provisioning, ssh_config: Path, testhost_up: TestHost):
    """The provisioned test host (testinfra), logged in as the administrator."""
    return testinfra.get_host(
        f"ssh://{testhost_up.admin_user}@{testhost_up.address}", ssh_config=str(ssh_config)
    )


def ssh_attempt(address: str, *options: str, user: str, command: str = "true", timeout: int = 20):
    """A raw ssh attempt from the machine (for checks that logins are refused)."""
    return subprocess.run(
        [
            "ssh", "-i", str(SSH_KEY), "-o", f"UserKnownHostsFile={KNOWN_HOSTS}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=10", "-o", "ControlMaster=no", "-o", "ControlPath=none",
            *options, f"{user}@{address}", command,
        ],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip

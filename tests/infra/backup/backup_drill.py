"""What the backup drill's conftest and tests share: its two hosts, its inventory, how it
runs playbooks and commands on them, and where it keeps its measurements."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import kt_target

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
# Another pair of hosts (a copy of this inventory with the names, addresses and
# repository paths changed): KT_BACKUP_INVENTORY, KT_BACKUP_APP_HOST, KT_BACKUP_OFFSITE_HOST.
INVENTORY = Path(os.environ.get("KT_BACKUP_INVENTORY", HERE / "inventory"))
TESTHOST_SCRIPT = REPO / "scripts" / "testhost.sh"
APP_HOST = os.environ.get("KT_BACKUP_APP_HOST", "kt-bk")
OFFSITE_HOST = os.environ.get("KT_BACKUP_OFFSITE_HOST", "kt-bkoff")
# Measurements for docs/BENCHMARKS.md (printed with -s, kept with the infra results).
RESULTS_FILE = kt_target.STATE_DIR / "results" / "backup.jsonl"
# The drill's users (e-mail, project, conversation, subscription), for the restore onto
# a new server (test_restore_onto_a_new_server.py), which may run in a later session.
DRILL_DATA = kt_target.STATE_DIR / "results" / f"backup-drill-{APP_HOST}.json"
# Provisioning a bare host takes minutes; the drill several more.
DRILL_TIMEOUT = 3600


def inventory_vars(name: str) -> dict:
    out = subprocess.run(
        [str(REPO / ".venv" / "bin" / "ansible-inventory"), "-i", str(INVENTORY), "--host", name],
        check=True, capture_output=True, text=True,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg")},
    ).stdout  # fmt: skip
    return json.loads(out)


def record_result(key: str, value) -> None:
    """Keep a measurement for docs/BENCHMARKS.md, one JSON line per figure (print: -s)."""
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    line = {"key": key, "value": value, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with RESULTS_FILE.open("a") as results:
        results.write(json.dumps(line) + "\n")
    print(f"\n[backup result] {key} = {value}")


@dataclass
class Run:
    rc: int
    output: str
    seconds: float


def playbook(path: str, *args: str, inventory: Path = INVENTORY) -> Run:
    """ansible-playbook against the drill's inventory (or another), from the repo root."""
    started = time.monotonic()
    proc = subprocess.run(
        [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory), path, *args],
        cwd=REPO, capture_output=True, text=True, check=False,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"),
             "ANSIBLE_NOCOLOR": "1", "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}"},
    )  # fmt: skip
    return Run(proc.returncode, proc.stdout + proc.stderr, round(time.monotonic() - started, 1))


def on_host(name: str, command: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """A shell command as root on a test host (testhost.sh ssh: root, or the admin + sudo)."""
    proc = subprocess.run(
        [str(TESTHOST_SCRIPT), "ssh", name, command], capture_output=True, text=True, check=False
    )
    if check:
        assert proc.returncode == 0, (
            f"{name}: {command}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return proc


@dataclass
class Appliance:
    domain: str
    address: str

    @property
    def site(self) -> tuple[str, str]:
        return (self.domain, self.address)

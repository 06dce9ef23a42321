"""The monitoring role on its own test host (kt-mon, 10.99.0.31): the services listen on
loopback only, Prometheus scrapes its targets, and alerts reach a webhook when the site
goes down and when the last backup is too old.

The host is booted for this module and removed at the end (KT_KEEP_MON=1 keeps it).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
TESTHOST = REPO / "scripts" / "testhost.sh"
NAME, ADDRESS = "kt-mon", "10.99.0.31"
ALERTS_FILE = "/var/lib/kt-webhook/alerts.jsonl"
BACKUP_METRICS = "/var/lib/prometheus/node-exporter/knowledgetree_backup.prom"

pytestmark = pytest.mark.timeout(1200)


def guest(command: str, check: bool = True) -> str:
    """Run a shell command on kt-mon as root; its stdout."""
    done = subprocess.run(
        [str(TESTHOST), "ssh", NAME, command], capture_output=True, text=True, timeout=120
    )
    if check:
        assert done.returncode == 0, f"{command!r} failed on {NAME}: {done.stderr[-2000:]}"
    return done.stdout


def guest_json(url: str) -> dict:
    """GET a loopback URL of the guest (nothing here is reachable from outside)."""
    script = f'import urllib.request; print(urllib.request.urlopen("{url}").read().decode())'
    return json.loads(guest(f"python3 -c {shlex.quote(script)}"))


def apply_role() -> tuple[str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            str(HERE / "inventory.yml"),
            str(HERE / "playbook.yml"),
        ],
        cwd=REPO,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg")},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return done.stdout, time.monotonic() - started


def changed_count(output: str) -> int:
    match = re.search(rf"^{NAME}\s+:\s+ok=\d+\s+changed=(\d+)", output, re.MULTILINE)
    assert match, output[-2000:]
    return int(match[1])


@pytest.fixture(scope="module")
def host() -> Iterator[dict]:
    subprocess.run([str(TESTHOST), "up", NAME, ADDRESS], check=True, timeout=300)
    first, first_seconds = apply_role()
    second, second_seconds = apply_role()
    try:
        yield {
            "first": first,
            "second": second,
            "seconds": (first_seconds, second_seconds),
        }
    finally:
        if not os.environ.get("KT_KEEP_MON"):
            subprocess.run([str(TESTHOST), "down", NAME], check=False, timeout=120)


def wait_for_alert(alertname: str, timeout: float = 300) -> dict:
    """The first firing notification of ``alertname`` the webhook received."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in guest(f"cat {ALERTS_FILE} 2>/dev/null || true").splitlines():
            notification = json.loads(line)
            for alert in notification["alerts"]:
                if alert["labels"]["alertname"] == alertname and alert["status"] == "firing":
                    return alert
        time.sleep(5)
    rules = guest_json("http://127.0.0.1:9090/api/v1/alerts")
    raise AssertionError(f"{alertname} never reached the webhook; Prometheus: {rules}")


def test_second_run_changes_nothing(host):
    assert changed_count(host["second"]) == 0, host["second"][-3000:]


def test_everything_listens_on_loopback_only(host):
    listening = guest("ss -Hltn")
    for port in (9090, 9093, 9100, 9115):
        addresses = re.findall(rf"(\S+):{port}\s", listening)
        assert addresses, f"nothing listens on {port}:\n{listening}"
        assert set(addresses) <= {"127.0.0.1"}, f"port {port} is open on {addresses}"
    assert ":9094" not in listening  # Alertmanager's cluster port is off


def test_prometheus_scrapes_its_targets(host):
    deadline = time.monotonic() + 60
    while True:
        targets = guest_json("http://127.0.0.1:9090/api/v1/targets")["data"]["activeTargets"]
        health = {(t["labels"]["job"], t["labels"]["instance"]): t["health"] for t in targets}
        expected_up = {
            ("prometheus", "127.0.0.1:9090"),
            ("node", "127.0.0.1:9100"),
            ("knowledgetree", "127.0.0.1:8001"),
            ("site", "http://127.0.0.1:8080/"),
        }
        if all(health.get(target) == "up" for target in expected_up):
            break
        assert time.monotonic() < deadline, f"targets not up: {health}"
        time.sleep(3)
    # The idle colour is scraped too, and down (as on a real host between releases).
    assert health[("knowledgetree", "127.0.0.1:8002")] == "down"
    rules = guest_json("http://127.0.0.1:9090/api/v1/rules")["data"]["groups"]
    names = {rule["name"] for group in rules for rule in group["rules"]}
    assert {"SiteDown", "BackupTooOld", "CertificateExpiresSoon", "DiskAlmostFull"} <= names


def test_alerts_reach_the_webhook_when_the_site_is_down_and_backups_are_old(host):
    guest(f"rm -f {ALERTS_FILE}")
    # A backup that last succeeded 27 hours ago, as the backup job would write it.
    stale = int(time.time()) - 27 * 3600
    guest(
        f"printf 'knowledgetree_backup_last_success_timestamp_seconds {stale}\\n"
        f"knowledgetree_backup_last_run_success 1\\n' > {BACKUP_METRICS}.tmp"
        f" && mv {BACKUP_METRICS}.tmp {BACKUP_METRICS}"
    )
    guest("systemctl stop kt-site")
    try:
        backup = wait_for_alert("BackupTooOld", timeout=120)
        assert backup["labels"]["severity"] == "critical"
        assert "old" in backup["annotations"]["summary"]
        # SiteDown waits 2 minutes before firing (a blue-green switch must not page).
        site = wait_for_alert("SiteDown", timeout=300)
        assert site["labels"]["instance"] == "http://127.0.0.1:8080/"
    finally:
        guest("systemctl start kt-site")
        guest(f"rm -f {BACKUP_METRICS}")


def test_memory_of_the_monitoring_stack(host, record_property):
    """Resident memory of the four services (docs/BENCHMARKS.md); printed, not asserted."""
    units = ["prometheus", "prometheus-alertmanager", "prometheus-node-exporter"]
    units.append("prometheus-blackbox-exporter")
    total = 0
    for unit in units:
        pid = guest(f"systemctl show -p MainPID --value {unit}").strip()
        rss_kb = int(guest(f"ps -o rss= -p {pid}").strip())
        record_property(unit, rss_kb)
        print(f"{unit}: {rss_kb / 1024:.1f} MiB")
        total += rss_kb
    print(f"monitoring stack: {total / 1024:.1f} MiB resident")
    print(f"role: first run {host['seconds'][0]:.1f} s, second run {host['seconds'][1]:.1f} s")
    assert total > 0

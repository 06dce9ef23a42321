"""Drift: what an admin changes by hand is put back by the next run, and its handler runs.

One site.yml run after a handful of hand edits on the provisioned host: a file of each
role (sshd_config, an nginx snippet, the app's unit, pg_hba.conf, the nftables ruleset)
changed, a service the roles enable stopped, a package they install removed. Each must be
back, and the service that reads it reloaded or restarted, so the change is live too.
The run uses the opt-in Mitogen strategy (`make provision FAST=1`): the plain strategy is
proven by the suite's first and second runs, and this is where Mitogen must do the same
repairs and run the same handlers (one run fewer in the suite than testing it apart).
"""

from __future__ import annotations

import shlex
import time

import kt_target
import pytest
from conftest import SITE_PLAYBOOK, record_result, run_playbook

SSHD_CONFIG = "/etc/ssh/sshd_config"
NGINX_HEADERS = "/etc/nginx/knowledgetree/security-headers.conf"
APP_UNIT = "/etc/systemd/system/knowledgetree@.service"
APP_SERVICE = "knowledgetree@blue.service"
PG_HBA = "/etc/postgresql/17/main/pg_hba.conf"
NFT_RULESET = "/etc/nftables.conf"
STOPPED_SERVICE = "fail2ban.service"
REMOVED_PACKAGE = "debsums"  # hardening_packages
# The port the drifted ruleset opens: nothing listens there, so opening it is harmless.
DRIFT_PORT = 8999


def sudo(host, command: str) -> str:
    with host.sudo():
        return host.check_output(command)


def sha1(host, path: str) -> str:
    return sudo(host, f"sha1sum {shlex.quote(path)}").split()[0]


def unit_property(host, unit: str, name: str) -> str:
    return sudo(host, f"systemctl show --value --property={name} {unit}")


def pg_conf_load_time(host) -> str:
    return sudo(
        host, "runuser -u postgres -- psql -XAtc 'SELECT pg_conf_load_time()' knowledgetree"
    )


@pytest.fixture(scope="module")
def drifted(host, release):
    """Hand edits on the provisioned host, then one site.yml run; what was seen before."""
    before = {
        "hashes": {
            p: sha1(host, p) for p in (SSHD_CONFIG, NGINX_HEADERS, APP_UNIT, PG_HBA, NFT_RULESET)
        },
        "app_pid": unit_property(host, APP_SERVICE, "MainPID"),
        "app_started": unit_property(host, APP_SERVICE, "ExecMainStartTimestampMonotonic"),
        "pg_conf_load_time": pg_conf_load_time(host),
        "since": sudo(host, "date +%s"),
    }
    edits = [
        # sshd: a weaker setting, made live by hand.
        f"sed -i 's/^MaxAuthTries .*/MaxAuthTries 6/' {SSHD_CONFIG}",
        # nginx: a security header dropped, and nginx reloaded so it is really gone.
        f"sed -i '/X-Frame-Options/d' {NGINX_HEADERS}",
        "systemctl reload nginx",
        # The app's unit and pg_hba.conf: a comment is enough to differ.
        f"echo '# edited by hand' >> {APP_UNIT}",
        f"echo '# edited by hand' >> {PG_HBA}",
        # The firewall: a port opened in the file and loaded.
        f"sed -i 's/dport {{ 80, 443 }} accept/&; tcp dport {DRIFT_PORT} accept/' {NFT_RULESET}",
        f"nft -f {NFT_RULESET}",
        f"systemctl stop {STOPPED_SERVICE}",
        f"DEBIAN_FRONTEND=noninteractive apt-get remove -y -q {REMOVED_PACKAGE}",
    ]
    for edit in edits:
        sudo(host, edit)
    assert "x-frame-options" not in kt_target.curl("/").headers
    assert str(DRIFT_PORT) in sudo(host, "nft list table inet knowledgetree")
    assert not host.package(REMOVED_PACKAGE).is_installed

    time.sleep(1)  # the journal's --since has one-second steps
    run = run_playbook(SITE_PLAYBOOK, "-e", release, mitogen=True)
    record_result("drift_repair_mitogen_run_seconds", run.seconds)
    assert run.rc == 0, run.tail(80)
    return before, run


def test_changed_files_are_put_back(host, drifted):
    before, _ = drifted
    for path, digest in before["hashes"].items():
        assert sha1(host, path) == digest, f"{path} was not put back"


def test_sshd_was_reloaded(host, drifted):
    before, _ = drifted
    assert "maxauthtries 2" in sudo(host, "sshd -T").splitlines()
    journal = sudo(host, f"journalctl --no-pager -u ssh.service --since @{before['since']}")
    assert "Reloaded" in journal or "SIGHUP" in journal, journal[-2000:]


def test_nginx_was_reloaded_and_serves_the_header_again(drifted):
    response = kt_target.curl("/")
    assert response.headers.get("x-frame-options") == "DENY", response.headers


def test_app_unit_change_restarted_the_app(host, drifted):
    before, _ = drifted
    assert unit_property(host, APP_SERVICE, "ActiveState") == "active"
    assert unit_property(host, APP_SERVICE, "MainPID") != before["app_pid"]
    started = int(unit_property(host, APP_SERVICE, "ExecMainStartTimestampMonotonic"))
    assert started > int(before["app_started"])
    # systemd was told about the new unit file (no "changed on disk" warning left).
    assert unit_property(host, APP_SERVICE, "NeedDaemonReload") == "no"


def test_pg_hba_change_reloaded_postgres(host, drifted):
    before, _ = drifted
    assert pg_conf_load_time(host) > before["pg_conf_load_time"]


def test_firewall_ruleset_is_reloaded(host, drifted):
    live = sudo(host, "nft list table inet knowledgetree")
    assert str(DRIFT_PORT) not in live
    assert "policy drop" in live


def test_stopped_service_is_running_again(host, drifted):
    service = host.service(STOPPED_SERVICE)
    assert service.is_running
    assert service.is_enabled


def test_removed_package_is_installed_again(host, drifted):
    assert host.package(REMOVED_PACKAGE).is_installed


def test_the_run_reports_the_repairs(drifted):
    _, run = drifted
    changed = run.changed_tasks()
    for expected in (
        "hardening : Write sshd_config",
        "nginx : Write the security headers",
        "app : Install the systemd unit",
        "postgres : Write the client authentication rules",
        "firewall : Write the ruleset",
        "hardening : Enable and start the hardening services",
        "hardening : Install the security helpers",
    ):
        assert any(name.startswith(expected) for name in changed), (expected, changed)

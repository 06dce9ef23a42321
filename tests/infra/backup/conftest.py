"""Harness for the backup drill: an appliance host and an off-site SFTP host.

    kt-bk     10.99.0.41  provisioned with ansible/site.yml (--limit kt-bk), then the
                          backup play (roles/restic) of playbooks/setup.yml
    kt-bkoff  10.99.0.42  a bare host made an SFTP-only target by playbooks/setup.yml

Both come from scripts/testhost.sh, like the infra suite's kt-test, and are described by
tests/infra/backup/inventory (group_vars: inventories/local's, linked). They are
destroyed at the end unless KT_KEEP_TESTHOST=1; KT_REUSE_TESTHOST=1 re-runs the drill on
kept, provisioned ones (no down/up, no site.yml).

    .venv/bin/pytest tests/infra/backup -s      # about 10 min on a fresh pair of hosts

Other hosts than kt-bk/kt-bkoff: a copy of the inventory with the names, addresses and
repository paths changed, named by KT_BACKUP_INVENTORY, KT_BACKUP_APP_HOST and
KT_BACKUP_OFFSITE_HOST; test_restore_onto_a_new_server.py's new server by KT_NEW_SERVER
and KT_NEW_SERVER_ADDRESS (default kt-walk, the walk-through's host).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from backup.backup_drill import (
    APP_HOST,
    DRILL_TIMEOUT,
    HERE,
    OFFSITE_HOST,
    REPO,
    TESTHOST_SCRIPT,
    Appliance,
    inventory_vars,
    playbook,
    record_result,
)


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == HERE:
            item.add_marker(pytest.mark.timeout(DRILL_TIMEOUT))


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def hosts_up():
    if os.geteuid() != 0:
        pytest.skip("the backup drill creates containers and a bridge: run it as root")
    for name in (APP_HOST, OFFSITE_HOST):
        address = inventory_vars(name)["ansible_host"]
        if not _flag("KT_REUSE_TESTHOST"):
            subprocess.run([str(TESTHOST_SCRIPT), "down", name], capture_output=True, check=False)
        up = subprocess.run(
            [str(TESTHOST_SCRIPT), "up", name, address], capture_output=True, text=True, check=False
        )
        if up.returncode != 0:
            pytest.fail(f"scripts/testhost.sh up {name} {address} failed:\n{up.stderr}")
    yield
    if not _flag("KT_KEEP_TESTHOST"):
        for name in (APP_HOST, OFFSITE_HOST):
            subprocess.run([str(TESTHOST_SCRIPT), "down", name], capture_output=True, check=False)


@pytest.fixture(scope="session")
def appliance(hosts_up) -> Appliance:
    """kt-bk provisioned (site.yml) with backups to a local and an off-site repository."""
    app_vars = inventory_vars(APP_HOST)
    found = Appliance(domain=app_vars["kt_domain"], address=app_vars["ansible_host"])
    for args in (["start"], ["dns", found.domain, found.address]):
        subprocess.run(
            [str(REPO / "scripts" / "pebble.sh"), *args], check=True, capture_output=True
        )
    built = subprocess.run(
        [str(REPO / "scripts" / "build_release.sh")], cwd=REPO, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr[-3000:]
    # Kept hosts (KT_REUSE_TESTHOST=1) were provisioned by an earlier session.
    if not _flag("KT_REUSE_TESTHOST"):
        # pgBackRest's repository is on the off-site host, which does not know the new
        # host's key yet: a real first run stops there ("Authorise this key"). Here it
        # archives into a folder on the host until setup.yml has authorised the key and
        # points it off-site (stanza, check and first full backup there): one run saved.
        site = playbook("ansible/site.yml", "--limit", APP_HOST, "-e", "pgbackrest_repo_type=posix")
        record_result("provision_seconds", site.seconds)
        assert site.rc == 0, site.output[-6000:]
    setup = playbook(str(HERE / "playbooks" / "setup.yml"))
    assert setup.rc == 0, setup.output[-6000:]
    return found

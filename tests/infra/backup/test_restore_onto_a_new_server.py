"""Restore after losing the server: the drill's off-site backups onto a NEW server.

docs/MAINTENANCE.md, "Restore after losing the server", step by step: the drill's host
(APP_HOST) is lost (app and Postgres stopped for good); the same inventory, its address
changed to the new server's, provisions it (the first run stops at pgBackRest with the
key to authorise; once both keys are authorised on the off-site host, the run goes
through: the repository holds the old cluster's stanza, the new cluster is left
unarchived with a message, nothing is written to the repository). Point in time: on
the old server, just before its loss, row A is written, the moment noted, row B written
and archived; `restore_pitr.yml -e restore_to_time=<the moment>` brings the database
back to it from the off-site pgBackRest repository (A is there, B is not) and
`restore.yml -e restore_files_only=true` the uploads from the off-site restic one.
Then: the same rows and upload checksums as the old server's at the moment, the drill's
users and A's sign in, their conversations keep their citations, the subscription is
there, and pgBackRest archives again (`check` passes, a new write reaches the repository).

After the drill (its file name sorts last), in the same session: the drill's hosts,
the off-site one above all, are still up. In `make test-infra` it runs after the
walk-through, whose provisioned host (kt-walk, a cluster of its own) plays the new
server (scripts/test_infra.sh). On hosts of your own:

    KT_BACKUP_INVENTORY=... KT_BACKUP_APP_HOST=... KT_BACKUP_OFFSITE_HOST=... \\
    KT_NEW_SERVER=kt-x KT_NEW_SERVER_ADDRESS=10.99.0.x .venv/bin/pytest tests/infra/backup -s

(a new server that is not up yet is made bare, provisioned and torn down at the end).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import kt_target
import pytest

from backup.backup_drill import (
    APP_HOST,
    DRILL_DATA,
    INVENTORY,
    REPO,
    TESTHOST_SCRIPT,
    Appliance,
    on_host,
    playbook,
    record_result,
)
from backup.test_restore_drill import (
    DATABASE,
    PASSWORD,
    QUESTION,
    row_counts,
    sign_in,
    subscription_of,
    upload_checksums,
)

NEW_HOST = os.environ.get("KT_NEW_SERVER", "kt-walk")
NEW_ADDRESS = os.environ.get("KT_NEW_SERVER_ADDRESS", "10.99.0.12")
ok_json = kt_target.ok_json


def psql(host: str, sql: str) -> str:
    return on_host(host, f'runuser -u postgres -- psql -d {DATABASE} -tAc "{sql}"').stdout.strip()


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@pytest.fixture(scope="module")
def new_server() -> bool:
    """The new server: kt-walk as the walk-through left it (not torn down before the end
    of the session), or a bare host made here (and torn down here). True when bare."""
    if os.geteuid() != 0:
        pytest.skip("the backup drill creates containers and a bridge: run it as root")
    ours = not (kt_target.STATE_DIR / "hosts" / NEW_HOST / "root").is_dir()
    if ours:
        up = subprocess.run(
            [str(TESTHOST_SCRIPT), "up", NEW_HOST, NEW_ADDRESS], capture_output=True, text=True
        )
        assert up.returncode == 0, up.stderr
    else:
        # The walk-through's app and database: a new server has neither. Its cluster
        # stays (initdb'd there: a system identifier of its own).
        on_host(NEW_HOST, "systemctl stop 'knowledgetree@*.service'", check=False)
        on_host(NEW_HOST, f"runuser -u postgres -- dropdb --if-exists --force {DATABASE}")
        on_host(NEW_HOST, "rm -rf /var/lib/knowledgetree/uploads")
        # Nor its HTTPS site: the new domain's certificate comes later in the run (the
        # nginx role does not handle a domain change on a host serving HTTPS).
        on_host(NEW_HOST, "rm -f /etc/nginx/sites-enabled/knowledgetree-tls.conf")
    yield ours
    if ours and os.environ.get("KT_KEEP_TESTHOST", "") in ("", "0"):
        subprocess.run([str(TESTHOST_SCRIPT), "down", NEW_HOST], capture_output=True)


@pytest.fixture(scope="module")
def new_inventory(new_server):
    """The drill's inventory with the app host's address changed to the new server's:
    what an operator edits after losing the server (same vault, same repositories)."""
    folder = Path(tempfile.mkdtemp(prefix="new-server-", dir=kt_target.STATE_DIR / "tmp"))
    copy = folder / "inventory"
    shutil.copytree(INVENTORY, copy)  # links followed: group_vars/all is a relative one
    host_vars = copy / "host_vars" / f"{APP_HOST}.yml"
    text = re.sub(r"^ansible_host: .*$", f"ansible_host: {NEW_ADDRESS}",
                  host_vars.read_text(), count=1, flags=re.MULTILINE)  # fmt: skip
    host_vars.write_text(text)
    yield copy
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def lost(appliance: Appliance) -> dict:
    """The old server's last moments, then its loss (app and Postgres stop for good).

    Row A (a sign-up through the API, after the last restic run: only the WAL has it);
    the app stops; the moment to restore to is noted with the rows and uploads as they
    are then (nothing else writes); row B is written after it; every committed write's
    WAL, B's too, reaches the off-site repository (else a restore "to the moment" could
    pass only because the archive ended early).
    """
    users = json.loads(DRILL_DATA.read_text())
    row_a = f"pitr-a-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": row_a, "password": PASSWORD}
    ok_json(kt_target.api("POST", "/auth/register", body=body, site=appliance.site), 202)
    on_host(APP_HOST, "systemctl stop 'knowledgetree@*.service'")
    last = {"counts": row_counts(), "checksums": upload_checksums(), "users": users}
    last["row_a"], last["noted"] = row_a, psql(APP_HOST, "SELECT now()")
    time.sleep(1)  # B's commit well after the noted moment, whatever the clock's grain
    last["row_b"] = f"pitr-b-{uuid.uuid4().hex[:8]}@example.com"
    row_b = f"(gen_random_uuid(), '{last['row_b']}', 'written after the moment')"
    psql(APP_HOST, f"INSERT INTO users (id, email, password_hash) VALUES {row_b}")
    segment = psql(APP_HOST, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
    # check: switches to a new WAL file and waits until the one before is archived.
    on_host(APP_HOST, "runuser -u postgres -- pgbackrest --stanza=knowledgetree check")
    archived = psql(APP_HOST, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
    assert archived >= segment, f"row B's WAL ({segment}) not archived (last: {archived})"
    on_host(APP_HOST, "systemctl stop postgresql@17-main.service")
    return last


def test_provision_the_new_server_with_the_same_inventory(
    appliance: Appliance, lost: dict, new_server: bool, new_inventory: Path
):
    subprocess.run([str(REPO / "scripts" / "pebble.sh"), "dns", appliance.domain, NEW_ADDRESS],
                   check=True, capture_output=True)  # fmt: skip
    started = time.monotonic()
    if new_server:
        # A bare host: the first run stops at pgBackRest, its key not authorised yet. (The
        # walk-through's host has its keys and an admin login already: setup.yml can
        # authorise them at once, which saves lane 2 a run.)
        first = playbook("ansible/site.yml", "--limit", APP_HOST, inventory=new_inventory)
        assert first.rc != 0
        assert "Authorise this key on the SFTP server" in first.output, first.output[-4000:]
    # Both keys authorised on the off-site host (the old server's go); then the role on
    # the new cluster: the repository's stanza is the old cluster's, left alone.
    keys = playbook(str(Path(__file__).parent / "playbooks" / "setup.yml"), inventory=new_inventory)
    assert keys.rc == 0, keys.output[-6000:]
    assert "NOT BACKED UP YET" in keys.output, keys.output[-6000:]
    site = playbook("ansible/site.yml", "--limit", APP_HOST, inventory=new_inventory)
    assert site.rc == 0, site.output[-6000:]
    assert "NOT BACKED UP YET" in site.output and "make restore-pitr" in site.output
    record_result("new_server_provision_seconds", round(time.monotonic() - started, 1))


def test_restore_the_database_and_the_uploads_from_offsite(
    appliance: Appliance, lost: dict, new_inventory: Path
):
    load = load_average()
    database = playbook(
        "ansible/restore_pitr.yml",
        "-e",
        json.dumps({"restore_to_time": lost["noted"]}),
        inventory=new_inventory,
    )
    assert database.rc == 0, database.output[-6000:]
    record_result("new_server_pitr_seconds", database.seconds)
    assert psql(NEW_HOST, f"SELECT count(*) FROM users WHERE email = '{lost['row_a']}'") == "1", (
        "row A (written before the noted moment) is missing"
    )
    assert psql(NEW_HOST, f"SELECT count(*) FROM users WHERE email = '{lost['row_b']}'") == "0", (
        "row B (written after the noted moment) came back"
    )
    files = playbook(
        "ansible/restore.yml", "-e", "restore_files_only=true", inventory=new_inventory
    )
    assert files.rc == 0, files.output[-6000:]
    record_result("new_server_restore_seconds", round(database.seconds + files.seconds, 1))
    record_result("new_server_restore_load_before", load)

    assert row_counts(NEW_HOST) == lost["counts"]
    assert upload_checksums(NEW_HOST) == lost["checksums"]
    site = (appliance.domain, NEW_ADDRESS)
    # Row A's user signs in: the sign-up only the archived WAL had.
    sign_in(Appliance(domain=appliance.domain, address=NEW_ADDRESS), lost["row_a"])
    for user in lost["users"]:
        token = sign_in(Appliance(domain=appliance.domain, address=NEW_ADDRESS), user["email"])
        saved = ok_json(
            kt_target.api("GET", f"/conversations/{user['conversation']}", token=token, site=site),
            200,
        )
        assert [m["role"] for m in saved["messages"]] == ["user", "assistant"]
        assert saved["messages"][1]["sources"], saved
        body = {"query": QUESTION, "top_k": 3}
        found = ok_json(kt_target.api("POST", f"/projects/{user['project']}/search",
                                      token=token, body=body, site=site), 200)  # fmt: skip
        assert found["results"][0]["document_name"] == "honeybees.md"
    subscriber = lost["users"][0]
    assert subscription_of(NEW_HOST, subscriber["email"]) == (
        f"{subscriber['subscription']} pro active"
    )


def test_the_new_server_archives_to_the_repository_again(appliance: Appliance, lost: dict):
    on_host(NEW_HOST, "runuser -u postgres -- pgbackrest --stanza=knowledgetree check")
    email = f"after-{int(time.time())}@example.com"
    body = {"email": email, "password": "correct horse battery staple"}
    site = (appliance.domain, NEW_ADDRESS)
    ok_json(kt_target.api("POST", "/auth/register", body=body, site=site), 202)
    segment = psql(NEW_HOST, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
    on_host(NEW_HOST, "runuser -u postgres -- psql -tAc 'SELECT pg_switch_wal()'")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        archived = psql(NEW_HOST, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
        if archived >= segment:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"{segment} not archived on {NEW_HOST} (last: {archived})")
    # In the repository: pgBackRest lists it in the archive of the restored stanza.
    info = json.loads(
        on_host(
            NEW_HOST, "runuser -u postgres -- pgbackrest --stanza=knowledgetree --output=json info"
        ).stdout
    )[0]
    assert info["status"]["code"] == 0, info
    assert max(archive["max"] for archive in info["archive"]) >= segment, info["archive"]

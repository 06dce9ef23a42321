"""Point-in-time recovery with pgBackRest: WAL archived to the off-site host continuously.

Write row A, note the time, write row B; restore the database to the noted time: A is
there, B is not. Also measured: how long a committed write waits until its WAL is in the
off-site repository (the RPO: what losing the host at the worst moment takes with it).
"""

from __future__ import annotations

import json
import time
import uuid

import kt_target

from backup.backup_drill import APP_HOST, Appliance, on_host, playbook, record_result

PASSWORD = "correct horse battery staple"


def psql(sql: str) -> str:
    return on_host(
        APP_HOST, f'runuser -u postgres -- psql -d knowledgetree -tAc "{sql}"'
    ).stdout.strip()


def register(appliance: Appliance) -> str:
    email = f"pitr-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "password": PASSWORD}
    kt_target.ok_json(kt_target.api("POST", "/auth/register", body=body, site=appliance.site), 202)
    return email


def user_exists(email: str) -> bool:
    return psql(f"SELECT count(*) FROM users WHERE email = '{email}'") == "1"


def test_a_committed_write_reaches_the_offsite_archive_within_the_rpo(appliance: Appliance):
    register(appliance)
    started = time.monotonic()
    segment = psql("SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
    while time.monotonic() - started < 300:
        archived = psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
        if archived >= segment:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"{segment} not archived after 300 s (last: {archived})")
    record_result("rpo_seconds_one_write", round(time.monotonic() - started, 1))


def test_restore_to_a_point_in_time(appliance: Appliance):
    row_a = register(appliance)
    time.sleep(1.5)
    noted = psql("SELECT now()")
    time.sleep(1.5)
    row_b = register(appliance)
    assert user_exists(row_a) and user_exists(row_b)
    # B's WAL must be in the archive too, or the recovery would simply end early.
    on_host(APP_HOST, "runuser -u postgres -- pgbackrest --stanza=knowledgetree check")

    restored = playbook("ansible/restore_pitr.yml", "-e", json.dumps({"restore_to_time": noted}))
    assert restored.rc == 0, restored.output[-6000:]
    record_result("pitr_restore_seconds", restored.seconds)

    assert user_exists(row_a), "row A (written before the noted time) is missing"
    assert not user_exists(row_b), "row B (written after the noted time) came back"
    body = {"email": row_a, "password": PASSWORD}
    kt_target.ok_json(kt_target.api("POST", "/auth/login", body=body, site=appliance.site), 200)

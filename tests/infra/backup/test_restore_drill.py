"""The restore drill: data made through the API survives losing the database and the
uploads, restored from the off-site repository; a broken repository shows as a failure.

One module, in order (each step builds on the one before):
  1. users, projects, documents and conversations through the API (HTTPS, nginx);
  2. `ansible/backup.yml` (local + off-site over SFTP), a small change, a second,
     incremental backup; the row counts and upload checksums are recorded;
  3. restore.yml refuses to overwrite the live database without restore_force;
  4. the database is dropped, the uploads and the local repository are deleted;
  5. `ansible/restore.yml` from the off-site repository: the same rows and checksums,
     the app answers, old passwords sign in, conversations keep their citations;
  6. a wrong off-site password and an unreachable off-site host: a clear error in the
     journal and knowledgetree_backup_last_run_success 0 for that repository;
  7. a backup while two writers keep chatting, making artifacts, signing up and making
     projects through the API (write_load.py): no write fails; each repository's dump,
     restored into a scratch database, is one moment (constraints, counters, every
     transaction whole, nothing missing from before it or present from after it).
     Last, so the restores above compare against the drill's own runs.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import kt_target
import pytest

from backup import write_load
from backup.backup_drill import (
    APP_HOST,
    DRILL_DATA,
    OFFSITE_HOST,
    Appliance,
    inventory_vars,
    on_host,
    playbook,
    record_result,
)

ok_json = kt_target.ok_json
SAMPLES = Path(__file__).resolve().parents[3] / "samples" / "corpus"
DOCUMENTS = ("honeybees.md", "volcanoes.txt")
QUESTION = "How do honey bees tell each other where the flowers are?"
PASSWORD = "correct horse battery staple"
DATABASE = "knowledgetree"
METRICS = "/var/lib/prometheus/node-exporter/knowledgetree_backup.prom"


def api(appliance: Appliance, method: str, path: str, **kwargs):
    return kt_target.api(method, path, site=appliance.site, **kwargs)


def sign_in(appliance: Appliance, email: str) -> str:
    body = {"email": email, "password": PASSWORD}
    return ok_json(api(appliance, "POST", "/auth/login", body=body), 200)["access_token"]


def make_user_with_data(appliance: Appliance) -> dict:
    """A user, a project with two documents (indexed) and a cited conversation."""
    email = f"drill-{uuid.uuid4().hex[:8]}@example.com"
    ok_json(
        api(appliance, "POST", "/auth/register", body={"email": email, "password": PASSWORD}), 202
    )
    token = sign_in(appliance, email)
    project = ok_json(api(appliance, "POST", "/projects", token=token, body={"name": "Drill"}), 201)
    form = tuple(f"files=@{SAMPLES / name}" for name in DOCUMENTS)
    uploaded = ok_json(
        api(appliance, "POST", f"/projects/{project['id']}/documents", token=token, form=form), 202
    )
    deadline = time.monotonic() + 300
    for document in uploaded:
        while True:
            url = f"/projects/{project['id']}/documents/{document['id']}"
            status = ok_json(api(appliance, "GET", url, token=token), 200)["status"]
            if status in ("ready", "failed") or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert status == "ready", document
    answer = ok_json(
        api(
            appliance,
            "POST",
            "/chat",
            token=token,
            body={"message": QUESTION, "project_id": project["id"]},
        ),
        200,
    )
    assert answer["message"]["sources"], answer
    return {"email": email, "project": project["id"], "conversation": answer["conversation_id"]}


def row_counts(host: str = APP_HOST) -> dict[str, int]:
    """Exact row counts of every table of the app database."""
    sql = (
        "SELECT string_agg(format('SELECT %L, count(*) FROM public.%I', tablename, tablename),"
        " ' UNION ALL ') FROM pg_tables WHERE schemaname = 'public'"
    )
    union = on_host(host, f'runuser -u postgres -- psql -d {DATABASE} -tAc "{sql}"').stdout.strip()
    assert union, "no tables in the app database"
    out = on_host(
        host, f"runuser -u postgres -- psql -d {DATABASE} -tA -F ' ' -c \"{union}\""
    ).stdout
    return {
        table: int(n) for table, n in (line.split() for line in out.splitlines() if line.strip())
    }


def upload_checksums(host: str = APP_HOST) -> dict[str, str]:
    out = on_host(
        host, "cd /var/lib/knowledgetree && find uploads -type f -exec sha256sum {} +"
    ).stdout
    return {path: digest for digest, path in (line.split(maxsplit=1) for line in out.splitlines())}


def metrics() -> dict[str, float]:
    out = on_host(APP_HOST, f"cat {METRICS}").stdout
    return {
        name: float(value)
        for name, value in re.findall(r"^(\S+\{[^}]*\}) (\S+)$", out, re.MULTILINE)
    }


def add_subscription(email: str) -> str:
    """A paid subscription row for the user, as the Stripe webhook would store it. (The
    drill's inventory has billing off: no Stripe to send the webhook; the rows are what
    must survive.)"""
    sub = f"sub_drill{uuid.uuid4().hex[:12]}"
    sql = (
        "INSERT INTO billing_customers (user_id, stripe_customer_id)"
        f" SELECT id, 'cus_drill{sub[9:]}' FROM users WHERE email = '{email}';"
        " INSERT INTO subscriptions (id, user_id, plan, price_id, status, current_period_start,"
        " current_period_end, stripe_created_at)"
        f" SELECT '{sub}', id, 'pro', 'price_drill_pro', 'active', now(),"
        f" now() + interval '30 days', now() FROM users WHERE email = '{email}'"
    )
    on_host(APP_HOST, f'runuser -u postgres -- psql -d {DATABASE} -v ON_ERROR_STOP=1 -c "{sql}"')
    return sub


def subscription_of(host: str, email: str) -> str:
    """'<id> <plan> <status>' of the user's subscription ('' when there is none)."""
    sql = (
        "SELECT s.id || ' ' || s.plan || ' ' || s.status FROM subscriptions s"
        f" JOIN users u ON u.id = s.user_id WHERE u.email = '{email}'"
    )
    return on_host(host, f'runuser -u postgres -- psql -d {DATABASE} -tAc "{sql}"').stdout.strip()


@pytest.fixture(scope="module")
def drill(appliance: Appliance) -> dict:
    users = [make_user_with_data(appliance) for _ in range(2)]
    users[0]["subscription"] = add_subscription(users[0]["email"])
    DRILL_DATA.parent.mkdir(parents=True, exist_ok=True)
    DRILL_DATA.write_text(json.dumps(users))
    return {"users": users}


def test_backup_to_local_and_offsite(appliance: Appliance, drill: dict):
    first = playbook("ansible/backup.yml")
    assert first.rc == 0, first.output[-4000:]
    record_result("first_backup_seconds", first.seconds)
    found = metrics()
    for repo in ("local", "offsite"):
        assert found[f'knowledgetree_backup_last_run_success{{repository="{repo}"}}'] == 1
        assert found[f'knowledgetree_backup_last_size_bytes{{repository="{repo}"}}'] > 0
    record_result(
        "first_backup_size_bytes",
        found['knowledgetree_backup_last_size_bytes{repository="offsite"}'],
    )
    record_result(
        "first_backup_added_bytes_offsite",
        found['knowledgetree_backup_last_added_bytes{repository="offsite"}'],
    )
    repo_size = on_host(
        APP_HOST, "du -sb /var/backups/knowledgetree/restic | cut -f1"
    ).stdout.strip()
    record_result("local_repository_bytes_after_first_backup", int(repo_size))

    # A small change (one more user), then the incremental backup the timer would make.
    late = {"email": f"late-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD}
    ok_json(api(appliance, "POST", "/auth/register", body=late), 202)
    second = playbook("ansible/backup.yml")
    assert second.rc == 0, second.output[-4000:]
    record_result("incremental_backup_seconds", second.seconds)
    added = metrics()['knowledgetree_backup_last_added_bytes{repository="offsite"}']
    record_result("incremental_backup_added_bytes_offsite", added)
    snapshots = on_host(APP_HOST, "knowledgetree-restic offsite snapshots --json").stdout
    tags = {tag for snapshot in json.loads(snapshots) for tag in snapshot["tags"]}
    assert {"db", "globals", "files"} <= tags
    drill["counts"] = row_counts()
    drill["checksums"] = upload_checksums()
    assert drill["counts"]["users"] >= 3 and drill["checksums"]
    assert drill["counts"]["subscriptions"] >= 1


def test_restore_refuses_a_database_with_tables(drill: dict):
    refused = playbook("ansible/restore.yml")
    assert refused.rc != 0
    assert "restore_force=true" in refused.output, refused.output[-3000:]
    assert row_counts() == drill["counts"]


def test_restore_from_offsite_after_losing_database_uploads_and_local_repository(
    appliance: Appliance, drill: dict
):
    on_host(APP_HOST, "systemctl stop 'knowledgetree@*.service'")
    on_host(APP_HOST, f"runuser -u postgres -- dropdb --force {DATABASE}")
    on_host(APP_HOST, "rm -rf /var/lib/knowledgetree/uploads /var/backups/knowledgetree/restic")
    on_host(APP_HOST, "systemctl start knowledgetree@blue.service")

    restored = playbook("ansible/restore.yml", "-e", "restore_repository=offsite")
    assert restored.rc == 0, restored.output[-6000:]
    record_result("restore_from_offsite_seconds", restored.seconds)

    assert row_counts() == drill["counts"]
    assert upload_checksums() == drill["checksums"]
    subscriber = drill["users"][0]
    expected = f"{subscriber['subscription']} pro active"
    assert subscription_of(APP_HOST, subscriber["email"]) == expected
    for user in drill["users"]:
        token = sign_in(appliance, user["email"])
        saved = ok_json(
            api(appliance, "GET", f"/conversations/{user['conversation']}", token=token), 200
        )
        assert [m["role"] for m in saved["messages"]] == ["user", "assistant"]
        assert saved["messages"][1]["sources"], saved
        found = ok_json(api(appliance, "POST", f"/projects/{user['project']}/search", token=token,
                            body={"query": QUESTION, "top_k": 3}), 200)  # fmt: skip
        assert found["results"][0]["document_name"] == "honeybees.md"


def _failed_run(expected_message: str) -> None:
    run = playbook("ansible/backup.yml")
    assert run.rc != 0
    journal = on_host(
        APP_HOST, "journalctl -u knowledgetree-backup.service -p err --since -5min --no-pager"
    ).stdout
    assert expected_message in journal, journal[-3000:]
    found = metrics()
    assert found['knowledgetree_backup_last_run_success{repository="offsite"}'] == 0
    assert found['knowledgetree_backup_last_run_success{repository="local"}'] == 1
    # The last success stays what it was, so an alert on its age keeps counting.
    assert found['knowledgetree_backup_last_success_timestamp_seconds{repository="offsite"}'] > 0


def test_wrong_offsite_password_is_a_failed_run(drill: dict):
    password = "/etc/restic/offsite.password"
    on_host(APP_HOST, f"cp -p {password} {password}.drill && echo not-the-password > {password}")
    try:
        _failed_run("repository offsite: WRONG PASSWORD")
    finally:
        on_host(APP_HOST, f"mv {password}.drill {password}")


def test_unreachable_offsite_is_a_failed_run(drill: dict):
    app_address = inventory_vars(APP_HOST)["ansible_host"]
    block = (
        "nft add table inet drill && nft add chain inet drill input "
        "'{ type filter hook input priority -10; }' && "
        f"nft add rule inet drill input ip saddr {app_address} tcp dport 22 drop"
    )
    on_host(OFFSITE_HOST, block)
    try:
        _failed_run("repository offsite: cannot open it")
    finally:
        on_host(OFFSITE_HOST, "nft delete table inet drill")


SCRATCH_DATABASE = "knowledgetree_dumpcheck"


def _scratch_psql(sql: str) -> list[str]:
    out = on_host(APP_HOST, f'runuser -u postgres -- psql -d {SCRATCH_DATABASE} -tAc "{sql}"')
    return [line for line in out.stdout.splitlines() if line.strip()]


def _restore_into_scratch(repo: str, snapshot: str) -> tuple[set[str], list[str]]:
    """The run's pg_dump -Fc restored into a scratch database beside the app's (whose
    rows are not touched): pg_restore adds every foreign key, unique and check constraint
    after the data, so a row without its parent fails it. Its keys and broken counters."""
    createdb = f"runuser -u postgres -- createdb {SCRATCH_DATABASE}"
    on_host(APP_HOST, f"runuser -u postgres -- dropdb --if-exists {SCRATCH_DATABASE} && {createdb}")
    try:
        pipe = (
            f"knowledgetree-restic {repo} dump {snapshot} /{DATABASE}.dump | runuser -u postgres"
            f" -- pg_restore --exit-on-error --single-transaction --dbname={SCRATCH_DATABASE}"
        )
        restored = on_host(APP_HOST, f"bash -o pipefail -c '{pipe}'", check=False)
        assert restored.returncode == 0, f"{repo}: {restored.stderr[-3000:]}"
        return set(_scratch_psql(write_load.KEYS_SQL)), _scratch_psql(write_load.INVARIANTS_SQL)
    finally:
        on_host(APP_HOST, f"runuser -u postgres -- dropdb --if-exists {SCRATCH_DATABASE}")


def _restic_time(text: str) -> float:
    """restic's RFC 3339 times (nanoseconds, an offset or Z) as seconds since the epoch."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + 300  # a hang guard, not a measurement
    while not condition():
        assert time.monotonic() < deadline, f"waited 300 s for {what}"
        time.sleep(0.2)


def test_a_backup_under_write_load_is_one_consistent_moment(appliance: Appliance, drill: dict):
    writers = [
        write_load.Writer(appliance.site, sign_in(appliance, user["email"]), user["project"])
        for user in drill["users"]
    ]
    threads = [threading.Thread(target=writer.run, daemon=True) for writer in writers]
    for thread in threads:
        thread.start()
    try:
        _wait_for(lambda: all(w.rounds >= 1 or w.failures for w in writers), "a first round")
        began = time.time()
        run = playbook("ansible/backup.yml")
        ended = time.time()
        # Writes go on after the run too: the load covers all of it.
        _wait_for(
            lambda: all(w.failures or any(x.started > ended for x in w.writes) for w in writers),
            "a write after the backup",
        )
    finally:
        for writer in writers:
            writer.stop.set()
        for thread in threads:
            thread.join(timeout=120)
    assert run.rc == 0, run.output[-4000:]
    failures = [failure for writer in writers for failure in writer.failures]
    assert not failures, f"the app failed writes during the backup: {failures[:5]}"
    writes = [write for writer in writers for write in writer.writes]
    during = [w for w in writes if w.started < ended and w.ended > began]
    before = [w for w in writes if w.ended <= began]
    record_result("backup_under_load_seconds", run.seconds)
    record_result("backup_under_load_writes_during", len(during))
    record_result("backup_under_load_writer_max_latency_seconds",
                  round(max(w.latency for w in during), 2))  # fmt: skip
    record_result("backup_under_load_writer_max_latency_before_seconds",
                  round(max(w.latency for w in before), 2))  # fmt: skip

    for repo in ("local", "offsite"):
        listed = on_host(APP_HOST, f"knowledgetree-restic {repo} snapshots --json --tag db").stdout
        dump = max(json.loads(listed), key=lambda snapshot: snapshot["time"])
        summary = dump.get("summary", {})
        # The dump's snapshot was taken between restic starting pg_dump and its end.
        dump_began = _restic_time(summary.get("backup_start", dump["time"]))
        dump_ended = _restic_time(summary["backup_end"]) if "backup_end" in summary else ended
        assert began <= dump_began <= dump_ended <= ended, (repo, dump, began, ended)
        overlapping = [w for w in writes if w.started < dump_ended and w.ended > dump_began]
        assert overlapping, f"{repo}: no write while pg_dump ran"
        record_result(f"backup_under_load_writes_during_dump_{repo}", len(overlapping))
        keys, broken = _restore_into_scratch(repo, dump["id"])
        assert not broken, f"{repo}: counters disagree with their rows: {broken[:5]}"
        problems = write_load.check_against(writes, keys, dump_began, dump_ended)
        assert not problems, f"{repo}: the dump is not one moment: {problems[:5]}"

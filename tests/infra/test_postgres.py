"""Postgres on the provisioned host: pgvector, an owner role for migrations and a runtime
role for the app that may only read and write rows, localhost only."""

from __future__ import annotations

import shlex
from pathlib import Path
from urllib.parse import unquote

import pytest
from conftest import run_playbook

DB = "knowledgetree"
ROLE = "knowledgetree"  # the runtime role the app's service logs in as
OWNER = "knowledgetree_owner"  # owns the schema; only migrations log in as it
APP_ENV = "/etc/knowledgetree/knowledgetree.env"
OWNER_ENV = "/etc/knowledgetree/knowledgetree-owner.env"
DATABASE_PLAYBOOK = Path(__file__).with_name("playbooks") / "postgres_database.yml"


def sql(host, query: str, database: str = DB) -> str:
    """Run a query as the superuser (peer authentication over the socket)."""
    with host.sudo("postgres"):
        return host.check_output(f"psql -XAtq -d {database} -c {shlex.quote(query)}")


def app_env(host, path: str = APP_ENV) -> dict[str, str]:
    with host.sudo():
        text = host.file(path).content_string
    values = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value.strip("'")
    return values


def password_of(host, path: str) -> str:
    """The password in the DATABASE_URL of an environment file."""
    url = app_env(host, path)["DATABASE_URL"]
    return unquote(url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1])


def sql_as(host, role: str, path: str, query: str):
    """Run SQL logged in as ``role`` with its own password over TCP, as the app connects.
    Not through sudo: sudo would log the password to the journal (test_app.py looks)."""
    password = password_of(host, path)
    return host.run(
        f"PGPASSWORD={shlex.quote(password)} "
        f"psql -XAtq -v ON_ERROR_STOP=1 -h 127.0.0.1 -U {role} -d {DB} -c {shlex.quote(query)}"
    )


def test_server_is_running_and_enabled(host):
    service = host.service("postgresql@17-main")
    assert service.is_running
    assert service.is_enabled


def test_vector_extension_is_installed_in_the_app_database(host):
    assert sql(host, "SELECT extversion FROM pg_extension WHERE extname = 'vector'").startswith(
        "0.8"
    )


@pytest.mark.parametrize("role", [ROLE, OWNER])
def test_roles_have_no_special_privileges(host, role):
    flags = sql(
        host,
        f"SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin "
        f"FROM pg_roles WHERE rolname = '{role}'",
    )
    assert flags == "f|f|f|f|f|t"


def ownership(host) -> dict[str, str]:
    """Owner of the database, its public schema and every table, sequence and function."""
    return dict(
        line.split("|")
        for line in sql(
            host,
            f"SELECT 'database', pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{DB}' "
            "UNION ALL SELECT 'schema public', pg_get_userbyid(nspowner) FROM pg_namespace "
            "WHERE nspname = 'public' "
            "UNION ALL SELECT c.relkind::text || ' ' || c.relname, pg_get_userbyid(c.relowner) "
            "FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace "
            "AND c.relkind IN ('r', 'S', 'v', 'm', 'p') "
            "UNION ALL SELECT 'function ' || p.proname, pg_get_userbyid(p.proowner) FROM pg_proc p "
            "WHERE p.pronamespace = 'public'::regnamespace "
            "AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')",
        ).splitlines()
    )


def test_owner_role_owns_the_database_and_every_object(host):
    owners = ownership(host)
    assert "r users" in owners and "r alembic_version" in owners, owners  # migrated
    # The public schema belongs to pg_database_owner (Postgres 15+): the database's owner.
    assert owners.pop("schema public") in (OWNER, "pg_database_owner")
    assert set(owners.values()) == {OWNER}, owners


def row_privilege_problems(host) -> list[str]:
    """Tables whose runtime-role privileges are not exactly SELECT, INSERT, UPDATE, DELETE."""
    rows = sql(
        host,
        "SELECT tablename, "
        + ", ".join(
            f"has_table_privilege('{ROLE}', 'public.' || quote_ident(tablename), '{p}')"
            for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
        )
        + " FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    ).splitlines()
    assert len(rows) > 10, rows
    return [row for row in rows if row.split("|", 1)[1] != "t|t|t|t|f|f|f"]


def test_runtime_role_has_row_privileges_only_on_every_table(host):
    assert not row_privilege_problems(host)


@pytest.mark.parametrize(
    ("statement", "refusal"),
    [
        ("DROP TABLE users", "must be owner of table users"),
        ("TRUNCATE users", "permission denied for table users"),
        ("ALTER TABLE users ADD COLUMN kt_probe int", "must be owner of table users"),
        ("CREATE TABLE kt_probe (id int)", "permission denied for schema public"),
        ("CREATE INDEX kt_probe ON users (email)", "must be owner of table users"),
        ("DROP FUNCTION chunk_terms_maintain() CASCADE", "must be owner of function"),
    ],
)
def test_runtime_role_cannot_change_the_schema(host, statement, refusal):
    """Logged in as the app is: one bug or one compromised process cannot drop the data.
    In a transaction rolled back, so a wrong grant fails this test, not the host."""
    result = sql_as(host, ROLE, APP_ENV, f"BEGIN; {statement}; ROLLBACK;")
    assert result.rc != 0, f"{statement!r} was allowed"
    assert refusal in result.stderr


def test_owner_credentials_stay_out_of_the_apps_reach(host):
    """Only root reads the owner's password; the running service has none of it."""
    owner_env = host.file(OWNER_ENV)
    with host.sudo():
        assert (owner_env.user, owner_env.group, owner_env.mode) == ("root", "root", 0o600)
        owner_password = password_of(host, OWNER_ENV)
        assert owner_password != password_of(host, APP_ENV)
        assert f"//{ROLE}:" in app_env(host)["DATABASE_URL"]
        pid = host.check_output("systemctl show --value --property=MainPID knowledgetree@blue")
        assert pid != "0"
        environ = host.check_output(f"tr '\\0' '\\n' < /proc/{pid}/environ")
    assert f"//{ROLE}:" in environ
    assert owner_password not in environ
    assert OWNER not in environ


def test_migrate_runs_as_the_owner(host):
    """`knowledgetree migrate` (what a deploy runs) still works, logged in as the owner."""
    with host.sudo():
        result = host.run("knowledgetree migrate")
    assert result.rc == 0, result.stderr
    assert "Database is at revision" in result.stdout


def test_tables_a_migration_creates_are_usable_by_the_runtime_role(host):
    """ALTER DEFAULT PRIVILEGES FOR ROLE owner: a table a later migration creates gets the
    runtime role's grants at once. Checked in a transaction that is rolled back."""
    result = sql_as(
        host,
        OWNER,
        OWNER_ENV,
        "BEGIN; CREATE TABLE kt_migration_probe (id bigserial PRIMARY KEY); "
        f"SELECT has_table_privilege('{ROLE}', 'kt_migration_probe', 'INSERT'), "
        f"has_table_privilege('{ROLE}', 'kt_migration_probe', 'TRUNCATE'), "
        f"has_sequence_privilege('{ROLE}', 'kt_migration_probe_id_seq', 'USAGE'); ROLLBACK;",
    )
    assert result.rc == 0, result.stderr
    assert result.stdout.split() == ["t|f|t"], result.stdout


def test_an_existing_install_converges_to_the_owner_role(host):
    """A host provisioned before the owner role existed has the runtime role owning
    everything: the next provisioning hands it all to the owner (and changes nothing
    the time after)."""
    with host.sudo("postgres"):
        host.check_output(f"psql -XAtq -d {DB} -c 'REASSIGN OWNED BY {OWNER} TO {ROLE}'")
    try:
        simulated = set(ownership(host).values())
    finally:  # whatever happens, the host is put back for the tests after this one
        run = run_playbook(DATABASE_PLAYBOOK)
    assert simulated <= {ROLE, "pg_database_owner"}, simulated
    assert run.rc == 0, run.tail(60)
    owners = ownership(host)
    owners.pop("schema public")
    assert set(owners.values()) == {OWNER}, owners
    assert not row_privilege_problems(host)
    again = run_playbook(DATABASE_PLAYBOOK)
    assert again.rc == 0, again.tail(60)
    assert sum(counts["changed"] for counts in again.recap.values()) == 0, again.changed_tasks()


def test_app_role_cannot_create_databases(host):
    """Logged in with its own password over TCP, exactly as the app connects."""
    password = app_env(host)["DATABASE_URL"].split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    command = (
        f"PGPASSWORD={shlex.quote(unquote(password))} psql -XAtq -h 127.0.0.1 -U {ROLE} -d {DB} "
        "-c 'CREATE DATABASE kt_should_not_exist'"
    )
    result = host.run(command)
    assert result.rc != 0
    assert "permission denied to create database" in result.stderr
    # ... while the same login works for an ordinary query.
    ok = host.run(command.replace("CREATE DATABASE kt_should_not_exist", "SELECT current_user"))
    assert ok.rc == 0, ok.stderr
    assert ok.stdout.strip() == ROLE


def test_wrong_password_is_refused(host):
    result = host.run(f"PGPASSWORD=wrong psql -XAtq -h 127.0.0.1 -U {ROLE} -d {DB} -c 'SELECT 1'")
    assert result.rc != 0
    assert "password authentication failed" in result.stderr


def test_only_peer_and_scram_authentication(host):
    methods = set(sql(host, "SELECT DISTINCT auth_method FROM pg_hba_file_rules").split())
    assert methods == {"peer", "scram-sha-256"}
    assert sql(host, "SHOW password_encryption") == "scram-sha-256"


def test_listens_on_localhost_only(host):
    sockets = [s for s in host.socket.get_listening_sockets() if s.endswith(":5432")]
    assert sockets, "postgres is not listening on 5432"
    assert all(s in ("tcp://127.0.0.1:5432", "tcp://::1:5432") for s in sockets), sockets


@pytest.mark.parametrize(
    ("setting", "share"),
    [("shared_buffers", 0.25), ("effective_cache_size", 0.75)],
)
def test_memory_settings_follow_the_hosts_ram(host, setting, share):
    memtotal_kb = int(host.check_output("awk '/^MemTotal:/ {print $2}' /proc/meminfo"))
    expected_mb = int(memtotal_kb // 1024 * share)
    value = sql(host, f"SELECT setting::bigint * pg_size_bytes(unit) / 1048576 FROM pg_settings "
                      f"WHERE name = '{setting}'")  # fmt: skip
    assert int(value) == expected_mb

"""Postgres on the provisioned host: pgvector, a least-privilege app role, localhost only."""

from __future__ import annotations

import shlex
from urllib.parse import unquote

import pytest

DB = "knowledgetree"
ROLE = "knowledgetree"


def sql(host, query: str, database: str = DB) -> str:
    """Run a query as the superuser (peer authentication over the socket)."""
    with host.sudo("postgres"):
        return host.check_output(f"psql -XAtq -d {database} -c {shlex.quote(query)}")


def app_env(host) -> dict[str, str]:
    with host.sudo():
        text = host.file("/etc/knowledgetree/knowledgetree.env").content_string
    values = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value.strip("'")
    return values


def test_server_is_running_and_enabled(host):
    service = host.service("postgresql@17-main")
    assert service.is_running
    assert service.is_enabled


def test_vector_extension_is_installed_in_the_app_database(host):
    assert sql(host, "SELECT extversion FROM pg_extension WHERE extname = 'vector'").startswith(
        "0.8"
    )


def test_app_role_has_no_special_privileges(host):
    flags = sql(
        host,
        f"SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin "
        f"FROM pg_roles WHERE rolname = '{ROLE}'",
    )
    assert flags == "f|f|f|f|f|t"


def test_app_role_owns_the_app_database(host):
    owner = sql(host, f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{DB}'")
    assert owner == ROLE


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

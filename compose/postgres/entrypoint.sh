#!/bin/sh
# Postgres for KnowledgeTree: makes the cluster in the volume on the first start, then at
# every start (re)applies what roles/postgres does on the VPS: the owner role (owns the
# database, runs migrations), the runtime role (rows only), pgvector, the grants, and
# the two passwords from the environment (so a changed password takes effect).
set -eu
: "${KT_DB_OWNER_PASSWORD:?KT_DB_OWNER_PASSWORD is not set: put it in the compose env file}"
: "${KT_DB_APP_PASSWORD:?KT_DB_APP_PASSWORD is not set: put it in the compose env file}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    initdb --pgdata="$PGDATA" --username=postgres --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    # Local superuser by peer only; the two app roles over the compose network, by password.
    cat >"$PGDATA/pg_hba.conf" <<'HBA'
local   all           postgres                                 peer
host    knowledgetree knowledgetree,knowledgetree_owner samenet scram-sha-256
HBA
fi
# A private start (no TCP, a socket of its own) for the setup: the health check stays red.
mkdir -p /tmp/setup
pg_ctl --pgdata="$PGDATA" --silent --wait \
    -o "-c listen_addresses='' -c unix_socket_directories=/tmp/setup" start
psql --quiet --no-psqlrc --host=/tmp/setup --username=postgres --dbname=postgres \
    --set=ON_ERROR_STOP=1 <<'SQL'
\getenv owner_password KT_DB_OWNER_PASSWORD
\getenv app_password KT_DB_APP_PASSWORD
SELECT 'CREATE ROLE knowledgetree_owner' WHERE NOT EXISTS
    (SELECT FROM pg_roles WHERE rolname = 'knowledgetree_owner') \gexec
SELECT 'CREATE ROLE knowledgetree' WHERE NOT EXISTS
    (SELECT FROM pg_roles WHERE rolname = 'knowledgetree') \gexec
ALTER ROLE knowledgetree_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'owner_password';
ALTER ROLE knowledgetree LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'app_password';
SELECT 'CREATE DATABASE knowledgetree OWNER knowledgetree_owner' WHERE NOT EXISTS
    (SELECT FROM pg_database WHERE datname = 'knowledgetree') \gexec
\connect knowledgetree
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS vector;
REVOKE CONNECT, TEMPORARY ON DATABASE knowledgetree FROM PUBLIC;
GRANT CONNECT ON DATABASE knowledgetree TO knowledgetree;
GRANT USAGE ON SCHEMA public TO knowledgetree;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO knowledgetree;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO knowledgetree;
ALTER DEFAULT PRIVILEGES FOR ROLE knowledgetree_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO knowledgetree;
ALTER DEFAULT PRIVILEGES FOR ROLE knowledgetree_owner IN SCHEMA public
    GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO knowledgetree;
SQL
pg_ctl --pgdata="$PGDATA" --silent --wait stop
unset KT_DB_OWNER_PASSWORD KT_DB_APP_PASSWORD
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp \
    -c password_encryption=scram-sha-256 -c log_line_prefix='%m [%p] %q%u@%d '

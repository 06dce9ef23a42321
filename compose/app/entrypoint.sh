#!/bin/sh
# Builds DATABASE_URL from the role and password the compose file hands over (the
# password URL-encoded, read from the environment, never on a command line), then runs
# the command: `knowledgetree serve` (the app service) or `knowledgetree migrate`.
set -eu
: "${KT_DB_USER:?KT_DB_USER is not set}"
: "${KT_DB_PASSWORD:?KT_DB_PASSWORD is not set: put it in the compose env file}"
password=$(python3 -c 'import os, urllib.parse; print(urllib.parse.quote(os.environ["KT_DB_PASSWORD"], safe=""))')
DATABASE_URL="postgresql+asyncpg://$KT_DB_USER:$password@${KT_DB_HOST:-db}:5432/${KT_DB_NAME:-knowledgetree}"
export DATABASE_URL
unset KT_DB_PASSWORD password
if [ -z "${RELEASE:-}" ]; then
    RELEASE=$(cat /opt/knowledgetree/files/RELEASE)
    export RELEASE
fi
exec "$@"

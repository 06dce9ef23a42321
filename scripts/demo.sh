#!/usr/bin/env bash
# `make demo`: a local KnowledgeTree appliance on a disposable Debian 13 host.
#
#   1. boot the test host kt-demo (10.99.0.10) with scripts/testhost.sh
#   2. start pebble (a local ACME server) and point demo.knowledgetree.test at the host
#   3. build a release and run ansible/site.yml (hardening, Postgres, nginx with a
#      real ACME certificate, the app) against inventories/demo
#   4. create the demo account and load the sample corpus (samples/corpus)
#   5. print the URL and the login
#
# A second run reuses the host, the certificate, the account and the documents
# (site.yml then reports changed=0; the ingest skips documents it already has).
# Remove everything with: scripts/testhost.sh down kt-demo
set -euo pipefail
cd "$(dirname "$0")/.."

NAME=kt-demo
ADDRESS=10.99.0.10
DOMAIN=demo.knowledgetree.test
INVENTORY=inventories/demo
EMAIL=demo@knowledgetree.test
PROJECT=Samples
STATE_DIR=${KT_TESTHOST_STATE:-/var/lib/knowledgetree-testhost}
PASSWORD_FILE=$STATE_DIR/demo-password

step() { printf '\n==> %s\n' "$*" >&2; }
started=$SECONDS

step "Test host $NAME ($ADDRESS)"
scripts/testhost.sh up "$NAME" "$ADDRESS"

step "Local ACME server (pebble) and DNS for $DOMAIN"
scripts/pebble.sh start
scripts/pebble.sh dns "$DOMAIN" "$ADDRESS"

# pebble makes a new root at every start (after a reboot of this machine, say), so a
# certificate the host got from an earlier pebble is not trusted by the root printed
# below, and the new pebble does not know the host's ACME account. The host is
# disposable: make it anew (the account and the samples are loaded again below).
tls_check=0
curl --silent --output /dev/null --max-time 10 --cacert "$STATE_DIR/pebble/issuer-root.pem" \
  --resolve "$DOMAIN:443:$ADDRESS" "https://$DOMAIN/healthz" || tls_check=$?
if ((tls_check == 60)); then
  step "Recreating $NAME: its certificate comes from an earlier run of pebble"
  scripts/testhost.sh down "$NAME"
  scripts/testhost.sh up "$NAME" "$ADDRESS"
fi

step "Release"
scripts/build_release.sh

step "Provisioning (ansible/site.yml)"
provision_started=$SECONDS
ANSIBLE_CONFIG=ansible/ansible.cfg .venv/bin/ansible-playbook -i "$INVENTORY" ansible/site.yml
provision_seconds=$((SECONDS - provision_started))

step "Demo account and sample documents"
# One password per machine, made on the first run and reused afterwards.
if [[ ! -s $PASSWORD_FILE ]]; then
  (umask 077 && .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(12))' >"$PASSWORD_FILE")
fi
password=$(cat "$PASSWORD_FILE")
# create-admin keeps an existing account (and its password) as it is.
printf '%s\n' "$password" | scripts/testhost.sh ssh "$NAME" sudo knowledgetree create-admin "$EMAIL" --password-stdin
# The corpus goes into the app's data folder, readable by the app user only.
tar -C samples -cf - corpus | scripts/testhost.sh ssh "$NAME" \
  "sudo install -d -o knowledgetree -g knowledgetree -m 0750 /var/lib/knowledgetree/samples && \
   sudo tar -x --no-same-owner -C /var/lib/knowledgetree/samples && \
   sudo chown -R knowledgetree:knowledgetree /var/lib/knowledgetree/samples"
scripts/testhost.sh ssh "$NAME" \
  sudo knowledgetree ingest /var/lib/knowledgetree/samples/corpus --project "$PROJECT" --owner "$EMAIL"

ca=$STATE_DIR/pebble/issuer-root.pem
cat <<MSG

KnowledgeTree demo is ready (provisioning ${provision_seconds} s, everything $((SECONDS - started)) s).

  URL:       https://$DOMAIN/
  Login:     $EMAIL
  Password:  $password        (kept in $PASSWORD_FILE)
  Project:   $PROJECT (the sample documents of samples/corpus, licences in samples/corpus/LICENSE.md)

The name resolves only through the demo's own DNS. For a browser on this machine add
to /etc/hosts:

  $ADDRESS $DOMAIN

The certificate comes from the local test ACME server (pebble); trust its root for
this demo or accept the browser's warning: $ca
From the command line:

  curl --cacert $ca --resolve $DOMAIN:443:$ADDRESS https://$DOMAIN/readyz

The API (the browser app is not part of this release yet), e.g. a streamed, cited answer:

  C="curl -s --cacert $ca --resolve $DOMAIN:443:$ADDRESS"
  TOKEN=\$(\$C https://$DOMAIN/api/auth/login -H 'Content-Type: application/json' \\
    -d '{"email":"$EMAIL","password":"$password"}' | jq -r .access_token)
  PROJECT=\$(\$C https://$DOMAIN/api/projects -H "Authorization: Bearer \$TOKEN" | jq -r '.[0].id')
  \$C -N https://$DOMAIN/api/chat/stream -H "Authorization: Bearer \$TOKEN" \\
    -H 'Content-Type: application/json' \\
    -d "{\\"message\\":\\"How do I keep a sourdough starter alive?\\",\\"project_id\\":\\"\$PROJECT\\"}"

No ANTHROPIC_API_KEY is set, so the chat answers in offline mode (quoted passages).
Shell on the host: scripts/testhost.sh ssh $NAME     Remove it: scripts/testhost.sh down $NAME
MSG

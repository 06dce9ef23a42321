#!/usr/bin/env bash
# The load test of docs/BENCHMARKS.md ("Load through nginx and TLS"): a provisioned test
# host, then bench/load_nginx.py against it from this machine.
#
#   bench/load_host.sh [load_nginx.py options, e.g. --duration 30 --streams 10,50]
#
# The host is kt-bench (10.99.0.60; KT_BENCH_HOST / KT_BENCH_IP for another), made with
# scripts/testhost.sh and provisioned with ansible/site.yml from an inventory written to
# $KT_TESTHOST_STATE/bench-inventory: a copy of inventories/local with the host renamed
# and two load settings (below). KT_BENCH_REUSE=1 skips the provisioning when the host
# already answers /readyz (a second run takes minutes less); KT_BENCH_KEEP=0 destroys the
# host at the end (default: kept for the next run; `scripts/testhost.sh down kt-bench`).
set -euo pipefail
cd "$(dirname "$0")/.."
name=${KT_BENCH_HOST:-kt-bench}
address=${KT_BENCH_IP:-10.99.0.60}
domain="$name.knowledgetree.test"
state=${KT_TESTHOST_STATE:-/var/lib/knowledgetree-testhost}
inventory="$state/bench-inventory"
log() { echo "load_host: $*" >&2; }

rm -rf "$inventory"
cp -r inventories/local "$inventory"
mv "$inventory/host_vars/kt-test.yml" "$inventory/host_vars/$name.yml"
sed -i "s/kt-test/$name/g; s/10\.99\.0\.11/$address/g" \
  "$inventory/hosts.yml" "$inventory/host_vars/$name.yml"
sed -i "s/^kt_domain: .*/kt_domain: $domain/" "$inventory/group_vars/all/main.yml"
cat >"$inventory/group_vars/all/bench.yml" <<EOF
---
# Every request of the load generator comes from one address (this machine): with the
# per-address limits the run would measure nginx's limiter, not the host.
nginx_auth_rate: 60000r/m
nginx_auth_burst: 10000
nginx_chat_rate: 60000r/m
nginx_chat_burst: 10000
# The free plan allows 3 projects and a few hundred messages a month.
app_extra_environment:
  DEFAULT_PLAN: enterprise
EOF

ready() {
  curl --silent --fail --max-time 10 --resolve "$domain:443:$address" \
    --cacert "$state/pebble/issuer-root.pem" "https://$domain/readyz" >/dev/null
}

if [[ ${KT_BENCH_REUSE:-0} == 1 ]] && ready; then
  log "reusing $name ($address): it answers /readyz"
else
  scripts/testhost.sh up "$name" "$address"
  scripts/pebble.sh start
  scripts/pebble.sh dns "$domain" "$address"
  release=$(scripts/build_release.sh | tail -n 1)
  log "provisioning $name with $release"
  ANSIBLE_CONFIG=ansible/ansible.cfg PATH="$PWD/.venv/bin:$PATH" .venv/bin/ansible-playbook \
    -i "$inventory" ansible/site.yml -e "app_release_source=$release" >"$state/bench-provision.log" \
    || { tail -n 40 "$state/bench-provision.log" >&2; exit 1; }
fi

.venv/bin/python bench/load_nginx.py --domain "$domain" --address "$address" "$@"

if [[ ${KT_BENCH_KEEP:-1} == 0 ]]; then
  scripts/testhost.sh down "$name"
fi

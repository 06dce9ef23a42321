#!/usr/bin/env bash
# Debian's `pebble` (a test-only ACME server) plus `pebble-challtestsrv` (as its DNS
# server) on the test bridge address, so certbot on a test host gets a real
# certificate through a real HTTP-01 validation:
#
#   certbot (guest) --ACME over HTTPS--> pebble 10.99.0.1:14000
#   pebble --DNS A? demo.knowledgetree.test--> challtestsrv 10.99.0.1:8053 --> guest IP
#   pebble --GET http://<guest>/.well-known/acme-challenge/...--> nginx on the guest
#
# Usage:
#   scripts/pebble.sh up|start           start both (idempotent: running ones are kept)
#   scripts/pebble.sh down|stop          stop both
#   scripts/pebble.sh status             exit 0 when both answer
#   scripts/pebble.sh dns DOMAIN IPV4    make DOMAIN resolve to IPV4 in the test DNS
#   scripts/pebble.sh paths              print the files a test host / test needs
#
# Files (state under $PEBBLE_STATE, default /var/lib/knowledgetree-testhost/pebble):
#   listener-ca.pem   CA that signed pebble's own HTTPS listener: a guest trusts it so
#                     certbot can talk to the ACME directory (made once, kept).
#   issuer-root.pem   pebble's issuing root of the running instance (pebble makes a new
#                     one at every start): tests verify served certificates against it.
#   dns-records       DOMAIN IPV4 lines, replayed into challtestsrv on every start.
set -euo pipefail

BRIDGE_ADDRESS="${KT_BRIDGE_ADDRESS:-10.99.0.1}"
STATE="${PEBBLE_STATE:-/var/lib/knowledgetree-testhost/pebble}"
ACME_PORT=14000
ACME_MANAGEMENT_PORT=15000
DNS_PORT=8053
DNS_MANAGEMENT_PORT=8055

die() { echo "pebble.sh: $*" >&2; exit 1; }
log() { echo "pebble.sh: $*" >&2; }

is_running() {  # pidfile
  [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_for_port() {  # port seconds
  local port=$1 deadline=$((SECONDS + $2))
  until bash -c "exec 3<>/dev/tcp/$BRIDGE_ADDRESS/$port" 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

require_bridge() {
  # Read the whole list first: `ip … | grep -q` fails under pipefail whenever grep stops
  # before ip has written everything (SIGPIPE), i.e. when kt0 is not the last interface
  # (Docker's docker0 comes after it).
  local addresses
  addresses=$(ip -4 -o addr show)
  [[ $addresses == *" inet $BRIDGE_ADDRESS/"* ]] \
    || die "no interface has $BRIDGE_ADDRESS: create the test bridge first (scripts/testhost.sh up ...)"
}

# A small private CA and a certificate for the bridge address, for pebble's HTTPS
# listener (the Debian package ships no test certificates).
make_listener_certificate() {
  [[ -s "$STATE/listener-cert.pem" && -s "$STATE/listener-ca.pem" ]] && return 0
  log "creating the CA for pebble's HTTPS listener"
  umask 077
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=KnowledgeTree test ACME listener CA" \
    -keyout "$STATE/listener-ca-key.pem" -out "$STATE/listener-ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=$BRIDGE_ADDRESS" -keyout "$STATE/listener-key.pem" \
    -out "$STATE/listener.csr" 2>/dev/null
  printf 'subjectAltName=IP:%s,DNS:localhost\nextendedKeyUsage=serverAuth\n' \
    "$BRIDGE_ADDRESS" >"$STATE/listener.ext"
  openssl x509 -req -in "$STATE/listener.csr" -CA "$STATE/listener-ca.pem" \
    -CAkey "$STATE/listener-ca-key.pem" -CAcreateserial -days 3650 \
    -extfile "$STATE/listener.ext" -out "$STATE/listener-cert.pem" 2>/dev/null
  chmod 0644 "$STATE/listener-ca.pem" "$STATE/listener-cert.pem"
}

write_pebble_config() {
  cat >"$STATE/pebble-config.json" <<JSON
{
  "pebble": {
    "listenAddress": "$BRIDGE_ADDRESS:$ACME_PORT",
    "managementListenAddress": "$BRIDGE_ADDRESS:$ACME_MANAGEMENT_PORT",
    "certificate": "$STATE/listener-cert.pem",
    "privateKey": "$STATE/listener-key.pem",
    "httpPort": 80,
    "tlsPort": 443,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }
}
JSON
}

add_dns_record() {  # domain ipv4
  # challtestsrv's add-a appends to what the name already has: clear it first so the
  # name answers exactly one address (else pebble may validate against an old host).
  curl -fsS --max-time 5 -X POST "http://$BRIDGE_ADDRESS:$DNS_MANAGEMENT_PORT/clear-a" \
    -d "{\"host\":\"$1.\"}" >/dev/null
  curl -fsS --max-time 5 -X POST "http://$BRIDGE_ADDRESS:$DNS_MANAGEMENT_PORT/add-a" \
    -d "{\"host\":\"$1.\",\"addresses\":[\"$2\"]}" >/dev/null
}

start_dns() {
  if is_running "$STATE/challtestsrv.pid"; then return 0; fi
  log "starting pebble-challtestsrv (DNS on $BRIDGE_ADDRESS:$DNS_PORT)"
  # Only the DNS part is wanted; unknown names get no answer (no default address),
  # so a domain nobody registered fails validation like an unresolvable one would.
  setsid pebble-challtestsrv -dns01 "$BRIDGE_ADDRESS:$DNS_PORT" -http01 "" -https01 "" \
    -tlsalpn01 "" -management "$BRIDGE_ADDRESS:$DNS_MANAGEMENT_PORT" \
    -defaultIPv4 "" -defaultIPv6 "" \
    >>"$STATE/challtestsrv.log" 2>&1 </dev/null 9>&- &  # 9: the lock, not the daemon's
  echo $! >"$STATE/challtestsrv.pid"
  wait_for_port "$DNS_MANAGEMENT_PORT" 10 || die "pebble-challtestsrv did not start; see $STATE/challtestsrv.log"
  if [[ -s "$STATE/dns-records" ]]; then
    while read -r domain address; do
      [[ -n "$domain" ]] && add_dns_record "$domain" "$address"
    done <"$STATE/dns-records"
  fi
}

start_acme() {
  if is_running "$STATE/pebble.pid"; then return 0; fi
  log "starting pebble (ACME directory https://$BRIDGE_ADDRESS:$ACME_PORT/dir)"
  # NOSLEEP: validate at once; NONCEREJECT=0: no random bad-nonce errors (those test
  # client retries, not our provisioning).
  PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 setsid pebble -config "$STATE/pebble-config.json" \
    -dnsserver "$BRIDGE_ADDRESS:$DNS_PORT" >>"$STATE/pebble.log" 2>&1 </dev/null 9>&- &
  echo $! >"$STATE/pebble.pid"
  wait_for_port "$ACME_PORT" 15 || die "pebble did not start; see $STATE/pebble.log"
  # The issuing root is new at every start; keep this instance's copy for tests.
  curl -fsS --max-time 5 --cacert "$STATE/listener-ca.pem" \
    "https://$BRIDGE_ADDRESS:$ACME_MANAGEMENT_PORT/roots/0" -o "$STATE/issuer-root.pem" \
    || die "could not fetch pebble's issuing root"
}

stop_one() {  # pidfile
  if is_running "$1"; then
    local pid; pid=$(cat "$1")
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$1"
}

cmd_up() {
  command -v pebble >/dev/null || die "pebble is not installed: apt-get install pebble"
  require_bridge
  mkdir -p "$STATE"
  make_listener_certificate
  write_pebble_config
  start_dns
  start_acme
  cmd_status
}

cmd_status() {
  is_running "$STATE/challtestsrv.pid" || die "pebble-challtestsrv is not running"
  is_running "$STATE/pebble.pid" || die "pebble is not running"
  curl -fsS --max-time 5 --cacert "$STATE/listener-ca.pem" \
    "https://$BRIDGE_ADDRESS:$ACME_PORT/dir" >/dev/null || die "pebble does not answer"
  echo "pebble: https://$BRIDGE_ADDRESS:$ACME_PORT/dir (DNS $BRIDGE_ADDRESS:$DNS_PORT)"
}

cmd_dns() {  # domain ipv4
  local domain=${1:?usage: pebble.sh dns DOMAIN IPV4} address=${2:?usage: pebble.sh dns DOMAIN IPV4}
  [[ "$address" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "not an IPv4 address: $address"
  mkdir -p "$STATE"
  touch "$STATE/dns-records"
  # Keep one line per domain (the latest address wins).
  grep -v "^$domain " "$STATE/dns-records" >"$STATE/dns-records.new" || true
  echo "$domain $address" >>"$STATE/dns-records.new"
  mv "$STATE/dns-records.new" "$STATE/dns-records"
  if is_running "$STATE/challtestsrv.pid"; then add_dns_record "$domain" "$address"; fi
  echo "$domain -> $address"
}

cmd_paths() {
  echo "directory_url=https://$BRIDGE_ADDRESS:$ACME_PORT/dir"
  echo "dns_server=$BRIDGE_ADDRESS:$DNS_PORT"
  echo "listener_ca=$STATE/listener-ca.pem"
  echo "issuer_root=$STATE/issuer-root.pem"
}

# Two test lanes may start pebble or add a record at once: one at a time (the second
# start finds it running; no record is lost to a concurrent rewrite).
mkdir -p "$STATE"
exec 9>>"$STATE/.lock"
flock 9

case "${1:-}" in
  up | start) cmd_up ;;
  down | stop) stop_one "$STATE/pebble.pid"; stop_one "$STATE/challtestsrv.pid"; echo "pebble: stopped" ;;
  status) cmd_status ;;
  dns) shift; cmd_dns "$@" ;;
  paths) cmd_paths ;;
  *) echo "usage: $0 up|down|status|dns DOMAIN IPV4|paths" >&2; exit 2 ;;
esac

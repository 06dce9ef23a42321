#!/usr/bin/env bash
# Start or stop a Docker daemon for the compose test on a machine without systemd,
# without touching the machine's firewall: the nspawn test hosts' NAT (nftables table
# knowledgetree_testhost) and the FORWARD policy stay as they are.
#
#   scripts/compose_dockerd.sh install install docker.io and docker-compose (Debian's) if missing
#   scripts/compose_dockerd.sh start   start dockerd (idempotent) and wait until it answers
#   scripts/compose_dockerd.sh stop    stop the dockerd this script started
#   scripts/compose_dockerd.sh status  exit 0 when a daemon answers
#
# --iptables=false: dockerd would otherwise set the FORWARD policy to DROP and add its own
# NAT chains, which cuts the test hosts on the bridge kt0 off from the mirror. Without
# them containers reach the host's own addresses (pebble, the Anthropic stand-in) and each
# other, not the internet; image builds use the host's network instead (build.network:
# host in docker-compose.prod.yml). Published ports still work (docker-proxy).
# On a normal Docker host none of this applies: Docker's own service runs as usual.
set -euo pipefail
STATE=${KT_DOCKERD_STATE:-/var/lib/knowledgetree-testhost/dockerd}
PIDFILE=$STATE/dockerd.pid
LOG=$STATE/dockerd.log
SOCKET=/var/run/docker.sock

die() { echo "compose_dockerd: $*" >&2; exit 1; }

answers() { docker -H "unix://$SOCKET" version >/dev/null 2>&1; }

running() { [[ -s $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
  command -v dockerd >/dev/null || die "dockerd is missing: apt-get install docker.io docker-compose"
  if running && answers; then return 0; fi
  if answers; then die "another Docker daemon answers on $SOCKET (not started by this script): stop it or use it"; fi
  mkdir -p "$STATE"
  setsid dockerd --iptables=false --ip6tables=false --ip-masq=false \
    --pidfile "$PIDFILE" --host "unix://$SOCKET" >>"$LOG" 2>&1 </dev/null 9>&- &
  for _ in $(seq 120); do
    answers && return 0
    sleep 0.5
  done
  die "dockerd did not answer within 60 s; see $LOG"
}

# Debian's docker.io starts its own daemon on install where a service manager runs, and
# that daemon rewrites the firewall (see above). policy-rc.d is Debian's switch for "do
# not start services from package scripts"; it is put in place only for this install.
install() {
  local packages=(docker.io docker-compose) missing=() pkg guard=/usr/sbin/policy-rc.d added=
  for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  if [[ ! -e $guard ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$guard" && chmod 755 "$guard" && added=1
  fi
  local rc=0 apt=(apt-get -o DPkg::Lock::Timeout=600)
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -q --no-install-recommends "${missing[@]}" \
    || { "${apt[@]}" update -q && DEBIAN_FRONTEND=noninteractive \
           "${apt[@]}" install -y -q --no-install-recommends "${missing[@]}"; } || rc=$?
  [[ -n $added ]] && rm -f "$guard"
  return "$rc"
}

stop() {
  running || { rm -f "$PIDFILE"; return 0; }
  local pid
  pid=$(cat "$PIDFILE")
  kill "$pid"
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; return 0; }
    sleep 0.1
  done
  die "dockerd ($pid) did not stop within 30 s"
}

mkdir -p "$STATE"
exec 9>>"$STATE/.lock"
flock 9
case ${1:-} in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) answers ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac

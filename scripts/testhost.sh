#!/usr/bin/env bash
# Disposable Debian 13 ("trixie") test hosts for KnowledgeTree, booted with systemd-nspawn.
#
# Each host is a full systemd machine with its own network namespace on the bridge kt0
# (10.99.0.0/24, NAT to the outside so apt and pip work), sshd, a static address and a
# root ssh key. It stands in for a bare VPS: the playbooks and the testinfra tests run
# against it exactly as against a real server. See roles/README.md ("Tests and the test host").
#
#   scripts/testhost.sh up     [NAME] [IP]   create and boot a host (default kt-test 10.99.0.11)
#   scripts/testhost.sh down   [NAME]        stop it and delete its files
#   scripts/testhost.sh ssh    [NAME] [cmd…] ssh in as root (or as deploy + sudo once hardened)
#   scripts/testhost.sh status               list hosts, the bridge and the rootfs cache
#   scripts/testhost.sh rootfs               (re)build the cached root filesystem now
#   scripts/testhost.sh network              only the bridge kt0 and its NAT (for the compose test)
#
# Everything lives outside the repository, in $KT_TESTHOST_STATE
# (default /var/lib/knowledgetree-testhost):
#   rootfs-trixie.tar.zst   cached root filesystem (built once with mmdebstrap, ~20 s)
#   id_ed25519[.pub]        key pair used to log in to every test host
#   known_hosts             the test hosts' real host keys (so ssh keeps strict checking)
#   hosts/NAME/             root/ (the filesystem), ip, nspawn.pid, console.log
#
# `up` is idempotent: on a running host it does nothing; a new host reuses the cached rootfs.
# Needs root (network namespaces, bridge, nftables).
set -euo pipefail

STATE_DIR=${KT_TESTHOST_STATE:-/var/lib/knowledgetree-testhost}
SUITE=trixie
ROOTFS="$STATE_DIR/rootfs-$SUITE.tar.zst"
ROOTFS_STAMP="$ROOTFS.packages"
KEY="$STATE_DIR/id_ed25519"
KNOWN_HOSTS="$STATE_DIR/known_hosts"
HOSTS_DIR="$STATE_DIR/hosts"

BRIDGE=kt0
BRIDGE_ADDR=10.99.0.1
SUBNET=10.99.0.0/24
NFT_TABLE=knowledgetree_testhost

DEFAULT_NAME=kt-test
DEFAULT_IP=10.99.0.11

# What a bare cloud VPS image has: systemd, sshd, python3 (for Ansible), sudo, nftables.
# Everything else is the playbook's job, so that the test host proves the playbook.
GUEST_PACKAGES=systemd,systemd-sysv,openssh-server,python3,iproute2,nftables,sudo,ca-certificates,dbus
# Machine-side tools this script relies on (Debian package names).
HOST_PACKAGES=(mmdebstrap systemd-container nftables zstd iproute2 openssh-client)

BOOT_TIMEOUT=${KT_TESTHOST_BOOT_TIMEOUT:-120}

log() { printf 'testhost: %s\n' "$*" >&2; }
die() { printf 'testhost: error: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

require_root() {
  [[ $EUID -eq 0 ]] || die "must run as root (it creates a bridge, nftables rules and containers)"
}

# --- machine preparation -------------------------------------------------------------

ensure_host_packages() {
  local missing=() pkg
  for pkg in "${HOST_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$pkg")
    fi
  done
  if ((${#missing[@]})); then
    log "installing missing packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" \
      || { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
             apt-get install -y --no-install-recommends "${missing[@]}"; }
  fi
}

ensure_state_dir() {
  mkdir -p "$HOSTS_DIR" "$STATE_DIR/tmp"
  chmod 0700 "$STATE_DIR"
  if [[ ! -f $KEY ]]; then
    log "creating the test hosts' ssh key $KEY"
    ssh-keygen -q -t ed25519 -N '' -C knowledgetree-testhost -f "$KEY"
  fi
  touch "$KNOWN_HOSTS"
}

# The bridge, forwarding and NAT that let guests reach the package mirrors.
# All rules live in one table of our own, so nothing else on the machine is touched.
ensure_network() {
  if ! ip link show dev "$BRIDGE" >/dev/null 2>&1; then
    log "creating bridge $BRIDGE ($BRIDGE_ADDR/24)"
    ip link add name "$BRIDGE" type bridge
  fi
  if ! ip -4 -o addr show dev "$BRIDGE" | grep -q " $BRIDGE_ADDR/24 "; then
    ip addr add "$BRIDGE_ADDR/24" dev "$BRIDGE"
  fi
  ip link set dev "$BRIDGE" up
  if [[ $(sysctl -n net.ipv4.ip_forward) != 1 ]]; then
    sysctl -qw net.ipv4.ip_forward=1
  fi
  if ! nft list table ip "$NFT_TABLE" >/dev/null 2>&1; then
    log "adding nftables table ip $NFT_TABLE (masquerade for $SUBNET)"
    nft -f - <<EOF
table ip $NFT_TABLE {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr $SUBNET ip daddr != $SUBNET masquerade
  }
}
EOF
  fi
}

# --- root filesystem cache -----------------------------------------------------------

# The machine's own Debian mirror (from its apt sources), so the guest uses the same one.
detect_mirror() {
  if [[ -n ${KT_TESTHOST_MIRROR:-} ]]; then
    echo "$KT_TESTHOST_MIRROR"
    return
  fi
  local uri
  uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
          2>/dev/null \
        | grep -Eo '(https?)://[^ ]+/debian/?( |$)' | head -n1 | tr -d ' ' || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

build_rootfs() {
  local mirror security tmp
  mirror=$(detect_mirror)
  mirror=${mirror%/}
  security="${mirror%/debian}/debian-security"
  tmp="$STATE_DIR/tmp/rootfs.$$.tar.zst"
  log "building the $SUITE root filesystem from $mirror (one-off, about 20-60 s)"
  TMPDIR="$STATE_DIR/tmp" mmdebstrap --quiet --variant=minbase --include="$GUEST_PACKAGES" \
    "$SUITE" "$tmp" \
    "deb $mirror $SUITE main" \
    "deb $mirror $SUITE-updates main" \
    "deb $security $SUITE-security main" \
    || { rm -f "$tmp"; die "mmdebstrap failed (is $mirror reachable?)"; }
  mv -f "$tmp" "$ROOTFS"
  echo "$GUEST_PACKAGES" >"$ROOTFS_STAMP"
}

# Rebuild only when missing or when the package list changed.
ensure_rootfs() {
  if [[ -f $ROOTFS && -f $ROOTFS_STAMP && $(cat "$ROOTFS_STAMP") == "$GUEST_PACKAGES" ]]; then
    return
  fi
  build_rootfs
}

# --- one host ------------------------------------------------------------------------

host_dir() { echo "$HOSTS_DIR/$1"; }

host_pid() {
  local pidfile
  pidfile="$(host_dir "$1")/nspawn.pid"
  [[ -f $pidfile ]] || return 1
  local pid
  pid=$(cat "$pidfile")
  [[ -n $pid && -r /proc/$pid/comm && $(cat "/proc/$pid/comm") == systemd-nspawn ]] || return 1
  echo "$pid"
}

host_ip() {
  local f
  f="$(host_dir "$1")/ip"
  [[ -f $f ]] || die "no test host named $1 (try: $0 status)"
  cat "$f"
}

validate_name_ip() {
  local name=$1 ip=$2
  [[ $name =~ ^[a-z][a-z0-9-]{0,11}$ ]] \
    || die "host name '$name': use 1-12 lowercase letters, digits or '-' (it names the veth link)"
  [[ $ip =~ ^10\.99\.0\.([0-9]{1,3})$ ]] && ((BASH_REMATCH[1] >= 2 && BASH_REMATCH[1] <= 254)) \
    || die "address '$ip' must be in $SUBNET (10.99.0.2-254; .1 is the bridge)"
  local other
  for other in "$HOSTS_DIR"/*/ip; do
    [[ -f $other ]] || continue
    if [[ $(cat "$other") == "$ip" && $other != "$(host_dir "$name")/ip" ]]; then
      die "address $ip is already used by $(basename "$(dirname "$other")")"
    fi
  done
}

ssh_opts() {
  printf '%s\n' -i "$KEY" -o IdentitiesOnly=yes -o BatchMode=yes \
    -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$KNOWN_HOSTS" \
    -o ConnectTimeout=3 -o LogLevel=ERROR
}

# Fill a fresh root filesystem with this host's identity.
prepare_root() {
  local name=$1 ip=$2 root=$3
  echo "$name" >"$root/etc/hostname"
  cat >"$root/etc/hosts" <<EOF
127.0.0.1	localhost
127.0.1.1	$name
::1	localhost ip6-localhost ip6-loopback
EOF
  rm -f "$root/etc/resolv.conf"
  grep -E '^nameserver' /etc/resolv.conf >"$root/etc/resolv.conf" \
    || echo "nameserver 1.1.1.1" >"$root/etc/resolv.conf"

  install -d -m 0700 "$root/root/.ssh"
  install -m 0600 "$KEY.pub" "$root/root/.ssh/authorized_keys"

  # A unique identity per host: machine-id and ssh host keys are generated here, not cached.
  : >"$root/etc/machine-id"
  rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*
  chroot "$root" ssh-keygen -A >/dev/null

  # Trust the same extra CAs as this machine (HTTPS to PyPI goes through them).
  local crt copied=0
  for crt in /usr/local/share/ca-certificates/*.crt; do
    [[ -f $crt ]] || continue
    install -m 0644 "$crt" "$root/usr/local/share/ca-certificates/"
    copied=1
  done
  if ((copied)); then
    chroot "$root" update-ca-certificates >/dev/null 2>&1
  fi

  install -d "$root/etc/systemd/network"
  cat >"$root/etc/systemd/network/10-knowledgetree-testhost.network" <<EOF
# Written by scripts/testhost.sh: static address on the kt0 bridge.
[Match]
Name=host0

[Network]
Address=$ip/24
Gateway=$BRIDGE_ADDR
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
  chroot "$root" systemctl enable systemd-networkd.service >/dev/null 2>&1
}

remember_host_key() {
  local ip=$1 root=$2
  ssh-keygen -R "$ip" -f "$KNOWN_HOSTS" >/dev/null 2>&1 || true
  rm -f "$KNOWN_HOSTS.old"
  printf '%s %s\n' "$ip" "$(cut -d' ' -f1,2 "$root/etc/ssh/ssh_host_ed25519_key.pub")" >>"$KNOWN_HOSTS"
}

# The guest's PID 1 (its systemd): the child of systemd-nspawn.
guest_init_pid() {
  local nspawn
  nspawn=$(host_pid "$1") || return 1
  ps --ppid "$nspawn" -o pid= | head -n 1 | tr -d ' '
}

# Wait for the guest's systemd to finish booting, then for its sshd to accept connections.
# systemd is asked directly (nsenter), not over ssh: once provisioned, a host refuses root
# logins (and fail2ban would ban this machine for trying), yet `up` must boot it again.
wait_for_boot() {
  local name=$1 ip=$2 deadline state init=""
  deadline=$((SECONDS + BOOT_TIMEOUT))
  until [[ -n $init ]] && nsenter --target "$init" --all true 2>/dev/null; do
    host_pid "$name" >/dev/null || die "$name stopped while booting; see $(host_dir "$name")/console.log"
    ((SECONDS < deadline)) || die "$name: no init process after ${BOOT_TIMEOUT}s; see $(host_dir "$name")/console.log"
    sleep 0.5
    init=$(guest_init_pid "$name") || init=""
  done
  # Just after the guest's init starts, systemd may not answer yet: is-system-running then
  # says "offline" at once instead of waiting (seen under load). Ask again until it answers.
  while :; do
    state=$(timeout "$BOOT_TIMEOUT" nsenter --target "$init" --all \
      systemctl is-system-running --wait 2>/dev/null || true)
    [[ -z $state || $state == offline ]] && ((SECONDS < deadline)) || break
    sleep 0.5
  done
  case $state in
    running) ;;
    degraded)
      log "$name is up but degraded; failed units:"
      nsenter --target "$init" --all systemctl --failed --no-legend --plain >&2 || true
      ;;
    *) die "$name: systemd reports '${state:-nothing}'; see $(host_dir "$name")/console.log" ;;
  esac
  until timeout 3 bash -c "exec 3<>/dev/tcp/$ip/22" 2>/dev/null; do
    ((SECONDS < deadline)) || die "$name: no ssh on $ip after ${BOOT_TIMEOUT}s; see $(host_dir "$name")/console.log"
    sleep 0.5
  done
}

cmd_up() {
  local name=${1:-$DEFAULT_NAME} ip=${2:-$DEFAULT_IP}
  require_root
  ensure_state_dir
  validate_name_ip "$name" "$ip"
  local dir root
  dir=$(host_dir "$name")
  root="$dir/root"
  if host_pid "$name" >/dev/null; then
    [[ $(cat "$dir/ip") == "$ip" ]] || die "$name is already running with address $(cat "$dir/ip")"
    log "$name is already running at $ip"
    return 0
  fi
  ensure_host_packages
  ensure_network
  ensure_rootfs

  if [[ ! -f $dir/prepared ]]; then
    # A leftover of an interrupted `up`: start over from the cached rootfs.
    remove_host_files "$name"
    log "creating $name ($ip) from $(basename "$ROOTFS")"
    mkdir -p "$root"
    tar -I zstd --numeric-owner -xpf "$ROOTFS" -C "$root"
    echo "$ip" >"$dir/ip"
    prepare_root "$name" "$ip" "$root"
    touch "$dir/prepared"
  fi
  remember_host_key "$ip" "$root"

  log "booting $name"
  # setsid: the container outlives this script and the caller's terminal/process group.
  # --register=no --keep-unit: this machine may run without systemd as PID 1.
  setsid systemd-nspawn --quiet --boot -D "$root" -M "$name" \
    --network-bridge="$BRIDGE" --register=no --keep-unit \
    --capability=CAP_NET_ADMIN --console=passive \
    </dev/null >"$dir/console.log" 2>&1 9>&- &  # 9: the lock (main), not the container's
  echo $! >"$dir/nspawn.pid"
  sleep 0.3
  host_pid "$name" >/dev/null || die "systemd-nspawn exited at once; see $dir/console.log"
  wait_for_boot "$name" "$ip"
  log "$name is up at $ip (a shell: scripts/testhost.sh ssh $name)"
}

# Remove a host's directory, refusing if anything is still mounted below it.
remove_host_files() {
  local dir
  dir=$(host_dir "$1")
  [[ -d $dir ]] || return 0
  if findmnt -rn -o TARGET | grep -q "^$dir/"; then
    die "something is still mounted under $dir; not deleting it"
  fi
  rm -rf --one-file-system "$dir"
}

cmd_down() {
  local name=${1:-$DEFAULT_NAME}
  require_root
  local dir pid ip=""
  dir=$(host_dir "$name")
  [[ -d $dir ]] || { log "no host named $name"; return 0; }
  [[ -f $dir/ip ]] && ip=$(cat "$dir/ip")
  if pid=$(host_pid "$name"); then
    log "stopping $name"
    # SIGTERM makes nspawn shut the container's systemd down cleanly.
    kill -TERM "$pid"
    local i
    for i in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not stop within 30 s; killing it"
      kill -KILL "$pid"
      sleep 1
    fi
  fi
  remove_host_files "$name"
  if [[ -n $ip ]]; then
    ssh-keygen -R "$ip" -f "$KNOWN_HOSTS" >/dev/null 2>&1 || true
    rm -f "$KNOWN_HOSTS.old"
  fi
  log "$name removed"
}

cmd_ssh() {
  local name=${1:-$DEFAULT_NAME}
  shift || true
  local ip
  ip=$(host_ip "$name")
  host_pid "$name" >/dev/null || die "$name is not running (scripts/testhost.sh up $name $ip)"
  mapfile -t opts < <(ssh_opts)
  # Before provisioning the host takes root logins; afterwards (hardening sets
  # PermitRootLogin no) log in as the admin user with the same key and use sudo.
  local user=root
  if ! ssh "${opts[@]}" "root@$ip" true 2>/dev/null; then
    user=${KT_TESTHOST_ADMIN:-deploy}
  fi
  if (($#)); then
    if [[ $user == root ]]; then
      exec ssh "${opts[@]}" "root@$ip" "$@"
    fi
    exec ssh "${opts[@]}" "$user@$ip" "sudo -n sh -c $(printf '%q' "$*")"
  fi
  exec ssh "${opts[@]}" -o BatchMode=no -t "$user@$ip"
}

cmd_status() {
  local any=0 dir name state
  printf '%-14s %-12s %s\n' NAME ADDRESS STATE
  for dir in "$HOSTS_DIR"/*/; do
    [[ -d $dir ]] || continue
    any=1
    name=$(basename "$dir")
    if host_pid "$name" >/dev/null; then state="running (pid $(host_pid "$name"))"; else state=stopped; fi
    printf '%-14s %-12s %s\n' "$name" "$(cat "$dir/ip" 2>/dev/null || echo '?')" "$state"
  done
  ((any)) || echo "(no test hosts)"
  if ip link show dev "$BRIDGE" >/dev/null 2>&1; then
    echo "bridge: $BRIDGE $(ip -4 -o addr show dev "$BRIDGE" | awk '{print $4}')"
  else
    echo "bridge: $BRIDGE absent (created by 'up')"
  fi
  if [[ -f $ROOTFS ]]; then
    echo "rootfs: $ROOTFS ($(du -h "$ROOTFS" | cut -f1), built $(date -r "$ROOTFS" '+%F %T'))"
  else
    echo "rootfs: not built yet"
  fi
  echo "ssh key: $KEY   known_hosts: $KNOWN_HOSTS"
}

cmd_rootfs() {
  require_root
  ensure_host_packages
  ensure_state_dir
  build_rootfs
  log "rootfs ready: $ROOTFS"
}

cmd_network() {
  require_root
  ensure_host_packages
  ensure_network
}

# Hosts made or removed at once (the infra suite runs in parallel lanes) share the
# bridge, the rootfs cache and known_hosts: `up`, `down` and `rootfs` take turns.
one_at_a_time() {
  mkdir -p "$STATE_DIR"
  exec 9>>"$STATE_DIR/.lock"
  flock 9
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    up | down | rootfs | network) one_at_a_time ;;
  esac
  case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    ssh) cmd_ssh "$@" ;;
    status) cmd_status ;;
    rootfs) cmd_rootfs ;;
    network) cmd_network ;;
    -h | --help | help) usage 0 ;;
    *) usage 2 >&2 ;;
  esac
}

main "$@"

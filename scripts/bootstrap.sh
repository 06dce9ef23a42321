#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian 12 machine (run as root):
# the apt packages for tests and the test hosts, then the Python venv from the lock file.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
# What each package is for:
#   python3-venv python3-dev build-essential  the venv and wheels that compile
#   mmdebstrap systemd-container zstd iproute2 nftables  disposable Debian 13 test hosts (scripts/testhost.sh)
#   pebble                                    local ACME server, so Certbot is tested for real
#   testssl.sh                                TLS scan of the test host (docs/BENCHMARKS.md)
#   openssh-client rsync                      Ansible's transport
#   openssl jq                                certificates in tests; the curl examples of the README and the demo
#   chromium                                  the browser the frontend's Playwright tests drive (tests/e2e)
#   prometheus prometheus-alertmanager        promtool and amtool: the alert rules and the Alertmanager
#                                             config are checked and unit-tested in make test-app
APT_PACKAGES=(
  python3 python3-venv python3-dev build-essential git make curl ca-certificates
  mmdebstrap systemd-container zstd iproute2 nftables
  pebble testssl.sh openssh-client rsync openssl jq
  chromium
  prometheus prometheus-alertmanager
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo ">> apt-get install ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo ">> creating $VENV"
  python3 -m venv "$VENV"
fi
# pip's noise about absent local index folders is not useful here.
quiet_pip() { "$VENV/bin/pip" "$@" 2> >(grep -v -e '^WARNING: Location' -e 'does not provide the extra' >&2); }
quiet_pip install --quiet --upgrade pip
# torch first, the CPU build: a bare "torch" from PyPI is a multi-GB CUDA build.
quiet_pip install --quiet "torch==2.13.0"
quiet_pip install --quiet -r requirements-dev.lock
quiet_pip install --quiet --no-deps -e .
echo ">> environment ready ($VENV)"

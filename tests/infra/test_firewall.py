"""The firewall role, checked from the inside (ruleset, sockets) and from another
address (the machine itself at 10.99.0.1 on the test bridge)."""

from __future__ import annotations

import socket

import pytest

PUBLIC_PORTS = {22, 80, 443}
# A port nothing on the host should expose: a throwaway listener is started on it to
# prove that the firewall (not a missing service) is what keeps it closed.
PROBE_PORT = 9771


def public_listening_tcp_ports(host) -> set[int]:
    """TCP ports listening on a non-loopback address (wildcards included)."""
    with host.sudo():
        lines = host.check_output("ss -Hltn").splitlines()
    ports = set()
    for line in lines:
        local = line.split()[3]
        address, _, port = local.rpartition(":")
        address = address.strip("[]").split("%")[0]
        if address.startswith("127.") or address == "::1":
            continue
        ports.add(int(port))
    return ports


def connect(address: str, port: int, timeout: float = 3.0) -> str:
    """'open', 'refused' (RST: no firewall in the way) or 'timeout' (dropped)."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return "open"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"


def test_only_ssh_http_https_listen_on_public_addresses(host):
    """Postgres, the app colours and everything else listen on localhost only."""
    assert public_listening_tcp_ports(host) == PUBLIC_PORTS


def test_no_udp_service_listens_on_public_addresses(host):
    with host.sudo():
        lines = host.check_output("ss -Hlun").splitlines()
    public = [line for line in lines if not line.split()[3].startswith(("127.", "[::1]"))]
    assert public == []


def test_ruleset_is_default_deny_for_ipv4_and_ipv6(host):
    with host.sudo():
        ruleset = host.check_output("nft list table inet knowledgetree")
    assert "hook input priority filter; policy drop;" in ruleset
    assert "hook forward priority filter; policy drop;" in ruleset
    assert 'iif "lo" accept' in ruleset
    assert "ct state established,related accept" in ruleset
    assert "tcp dport 22" in ruleset and "limit rate over" in ruleset
    assert "tcp dport { 80, 443 } accept" in ruleset
    # the saved file is what is loaded at boot
    assert host.service("nftables").is_enabled


def test_ssh_http_https_are_reachable_from_another_address(testhost_up):
    assert connect(testhost_up.address, 22) == "open"
    assert connect(testhost_up.address, 80) == "open"
    assert connect(testhost_up.address, 443) == "open"


@pytest.mark.parametrize("port", [5432, 8001, 8002, 9100])
def test_internal_ports_time_out_from_another_address(testhost_up, port):
    assert connect(testhost_up.address, port) == "timeout"


def test_a_listening_but_unlisted_port_is_dropped(host, testhost_up):
    """Start a listener on all addresses: reachable on the host itself, dropped from outside."""
    unit = "kt-firewall-probe"
    with host.sudo():
        host.check_output(
            f"systemd-run --unit {unit} --collect"
            f" python3 -m http.server {PROBE_PORT} --bind 0.0.0.0"
        )
        try:
            host.check_output(
                f"for i in $(seq 50); do ss -Hltn 'sport = :{PROBE_PORT}' | grep -q . && exit 0;"
                " sleep 0.1; done; exit 1"
            )
            local = f"import socket; socket.create_connection(('127.0.0.1', {PROBE_PORT}), 3)"
            assert host.run(f'python3 -c "{local}"').rc == 0
            assert connect(testhost_up.address, PROBE_PORT) == "timeout"
        finally:
            host.run(f"systemctl stop {unit}")

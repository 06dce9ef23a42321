"""TLS on the provisioned host: pebble-issued certificate, protocols, renewal."""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter

import kt_target
from conftest import PEBBLE_SCRIPT, SITE_PLAYBOOK, run_playbook


def s_client(*args: str, servername: str | None = None) -> subprocess.CompletedProcess[str]:
    """openssl s_client to the host's 443 with SNI = the domain (or ``servername``),
    trusting pebble's root."""
    return subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"{kt_target.address()}:443",
            "-servername",
            servername or kt_target.domain(),
            "-CAfile",
            str(kt_target.PEBBLE_ISSUER_ROOT),
            "-verify_return_error",
            *args,
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_certificate_is_issued_by_pebble_and_verifies():
    """curl (kt_target) fails unless the chain verifies against pebble's root for the domain."""
    assert kt_target.curl("/healthz").status == 200
    result = s_client()
    assert "Verify return code: 0 (ok)" in result.stdout
    assert re.search(r"issuer=.*Pebble Intermediate CA", result.stdout)
    assert f"subject=CN={kt_target.domain()}" in result.stdout.replace(" = ", "=")


def test_tls_1_2_and_1_3_only():
    assert s_client("-tls1_3").returncode == 0
    assert s_client("-tls1_2").returncode == 0
    # TLS 1.1 is refused by the server (the local OpenSSL may also refuse to offer it).
    assert s_client("-tls1_1").returncode != 0


def test_no_ocsp_stapling():
    """Let's Encrypt ended OCSP in 2025: nothing is stapled."""
    result = s_client("-status", "-tls1_3")
    assert "OCSP response: no response sent" in result.stdout


def test_certificate_files_and_renewal_setup(host):
    domain = kt_target.domain()
    with host.sudo():
        assert host.file(f"/etc/letsencrypt/live/{domain}/fullchain.pem").exists
        renewal = host.file(f"/etc/letsencrypt/renewal/{domain}.conf").content_string
        hook = host.file("/etc/letsencrypt/renewal-hooks/deploy/knowledgetree-reload.sh")
        assert hook.mode == 0o755
        assert "systemctl reload nginx" in hook.content_string
    assert "authenticator = webroot" in renewal
    timer = host.service("certbot.timer")
    assert timer.is_enabled
    assert timer.is_running


def test_renewal_dry_run_succeeds(host):
    """A real renewal against the ACME server the certificate came from.

    `--dry-run` alone switches to Let's Encrypt's staging server; the test host has
    its own ACME server (pebble), so the server is passed from the renewal file.
    """
    domain = kt_target.domain()
    with host.sudo():
        renewal = host.file(f"/etc/letsencrypt/renewal/{domain}.conf").content_string
        server = re.search(r"^server = (\S+)$", renewal, re.M).group(1)
        result = host.run(f"certbot renew --dry-run --no-random-sleep-on-renew --server {server}")
    assert result.rc == 0, result.stderr
    assert "all simulated renewals succeeded" in (result.stdout + result.stderr).lower()


# Findings that come from pebble's test certificates, not from the server's setup:
# pebble puts neither a CRL nor an OCSP URL into its certificates (Let's Encrypt's
# carry a CRL URL) and issues them for five years (Let's Encrypt: 90 days).
TEST_CA_FINDINGS = {"cert_revocation", "cert_validityPeriod"}


def test_testssl_reports_no_high_or_critical_findings(tmp_path):
    """Debian's testssl.sh against the host's 443 (a couple of minutes)."""
    report = tmp_path / "testssl.json"
    subprocess.run(
        [
            "testssl", "--quiet", "--warnings", "off", "--color", "0",
            "--add-ca", str(kt_target.PEBBLE_ISSUER_ROOT), "--ip", kt_target.address(),
            "--jsonfile", str(report), f"https://{kt_target.domain()}/",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,  # its exit code counts findings; the JSON report is what matters
    )  # fmt: skip
    findings = json.loads(report.read_text())
    counts = Counter(item["severity"] for item in findings)
    serious = [
        f"{item['severity']} {item['id']}: {item['finding']}"
        for item in findings
        if item["severity"] in ("HIGH", "CRITICAL") and item["id"] not in TEST_CA_FINDINGS
    ]
    try:
        from conftest import record_result
    except ImportError:  # run without the harness (--noconftest)
        print(f"\ntestssl.sh severities: {dict(counts)}")
    else:
        record_result("testssl_severity_counts", dict(counts))
        record_result(
            "testssl_test_ca_findings",
            [f"{i['severity']} {i['id']}" for i in findings if i["id"] in TEST_CA_FINDINGS],
        )
    assert not serious, serious


def test_a_changed_domain_gets_its_certificate_before_tls_names_it(host, release):
    """kt_domain changed on a host that already serves HTTPS, then site.yml again: the new
    name is served over HTTP for the ACME challenge while the running TLS server keeps the
    old certificate (nginx -t passes), certbot obtains the new one, then TLS serves it.
    Then back to the suite's domain the same way (its certificate is still there).
    Two Mitogen runs of site.yml: about 3 minutes."""
    old, new = kt_target.domain(), f"renamed.{kt_target.domain()}"
    address = kt_target.address()
    subprocess.run([str(PEBBLE_SCRIPT), "dns", new, address], check=True, capture_output=True)
    try:
        renamed = run_playbook(SITE_PLAYBOOK, "-e", release, "-e", f"kt_domain={new}", mitogen=True)
        assert renamed.rc == 0, renamed.tail(80)
        served = s_client(servername=new)
        assert "Verify return code: 0 (ok)" in served.stdout
        assert f"subject=CN={new}" in served.stdout.replace(" = ", "=")
        assert kt_target.curl("/healthz", site=(new, address)).status == 200
        redirect = kt_target.curl("/x", scheme="http", site=(new, address))
        assert redirect.headers["location"] == f"https://{new}/x"
    finally:
        back = run_playbook(SITE_PLAYBOOK, "-e", release, mitogen=True)
        with host.sudo():
            host.run(f"certbot delete --non-interactive --cert-name {new}")
    assert back.rc == 0, back.tail(80)
    assert f"subject=CN={old}" in s_client().stdout.replace(" = ", "=")
    assert kt_target.curl("/healthz").status == 200

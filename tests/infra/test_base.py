"""The base role: packages, time, locale, the administrator account, journald."""

from __future__ import annotations

import pytest
from conftest import SSH_KEY


@pytest.mark.parametrize(
    "package", ["acl", "ca-certificates", "curl", "locales", "python3-apt", "systemd-timesyncd"]
)
def test_base_packages_are_installed(host, package):
    assert host.package(package).is_installed


def test_administrator_has_sudo_and_only_the_configured_key(host, testhost_up):
    admin = host.user(testhost_up.admin_user)
    assert admin.exists
    assert "sudo" in admin.groups
    assert admin.shell == "/bin/bash"
    with host.sudo():
        keys = host.file(f"{admin.home}/.ssh/authorized_keys")
        assert keys.mode == 0o600
        assert keys.user == testhost_up.admin_user
        assert keys.content_string.split() == (SSH_KEY.with_suffix(".pub").read_text().split())
        sudoers = host.file("/etc/sudoers.d/knowledgetree-admin")
        assert sudoers.mode == 0o440
        # no password at all: locked in /etc/shadow
        assert host.check_output(f"getent shadow {testhost_up.admin_user}").split(":")[1] in (
            "!",
            "*",
            "!*",
        )
    assert host.run("sudo -n true").rc == 0


def test_time_zone_and_locale(host):
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/Etc/UTC"
    assert host.file("/etc/default/locale").content_string.strip() == "LANG=en_US.UTF-8"
    assert "en_US.utf8" in host.check_output("locale -a")


def test_timesyncd_is_enabled(host):
    # Inside the nspawn test host timesyncd is skipped by its own ConditionVirtualization.
    assert host.service("systemd-timesyncd").is_enabled


def test_journald_is_limited_and_persistent(host):
    conf = host.file("/etc/systemd/journald.conf.d/knowledgetree.conf").content_string
    assert "SystemMaxUse=500M" in conf
    assert "Storage=persistent" in conf
    assert host.file("/var/log/journal").is_directory

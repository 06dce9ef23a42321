"""The app on the provisioned host: user, files, sandboxed unit, Debian's torch, command."""

from __future__ import annotations

import json
import time

import kt_target

USER = "knowledgetree"


def test_app_user_has_no_login_shell(host):
    user = host.user(USER)
    assert user.exists
    assert user.shell == "/usr/sbin/nologin"
    assert user.uid < 1000  # a system user


def test_environment_file_is_roots_and_readable_by_the_app_group_only(host):
    """root reads it (systemd, the knowledgetree command): the app user must not write it."""
    with host.sudo():
        env = host.file("/etc/knowledgetree/knowledgetree.env")
        assert env.is_file
        assert (env.user, env.group, env.mode) == ("root", USER, 0o640)
        content = env.content_string
    for name in ("SECRET_KEY", "DATABASE_URL", "DATA_DIR", "HF_HUB_OFFLINE"):
        assert f"\n{name}=" in content


def test_data_folders_belong_to_the_app_user(host):
    with host.sudo():
        for path in ("/var/lib/knowledgetree", "/var/lib/knowledgetree/uploads"):
            folder = host.file(path)
            assert folder.is_directory
            assert (folder.user, folder.group, folder.mode) == (USER, USER, 0o750)


def test_release_is_read_only_to_the_app(host):
    release = host.file("/opt/knowledgetree/current")
    assert release.is_symlink
    assert release.linked_to.startswith("/opt/knowledgetree/releases/")
    assert host.file(release.linked_to).user == "root"
    assert host.file("/opt/knowledgetree/blue").linked_to == release.linked_to


def test_blue_color_runs_and_is_enabled(host):
    service = host.service("knowledgetree@blue")
    assert service.is_running
    assert service.is_enabled


def test_app_listens_on_localhost_only(host):
    sockets = [s for s in host.socket.get_listening_sockets() if s.endswith(":8001")]
    assert sockets == ["tcp://127.0.0.1:8001"]


def test_unit_is_sandboxed(host):
    props = host.check_output(
        "systemctl show knowledgetree@blue -p ProtectSystem -p ProtectHome -p PrivateTmp "
        "-p NoNewPrivileges -p CapabilityBoundingSet -p RestrictAddressFamilies "
        "-p SystemCallFilter -p User -p ReadWritePaths"
    )
    settings = dict(line.split("=", 1) for line in props.splitlines())
    assert settings["ProtectSystem"] == "strict"
    assert settings["ProtectHome"] == "yes"
    assert settings["PrivateTmp"] == "yes"
    assert settings["NoNewPrivileges"] == "yes"
    assert settings["CapabilityBoundingSet"] == ""
    assert settings["User"] == USER
    assert settings["ReadWritePaths"] == "/var/lib/knowledgetree"
    assert set(settings["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert settings["SystemCallFilter"]  # @system-service, expanded by systemd


def test_running_process_has_no_privileges(host):
    pid = host.check_output("systemctl show -p MainPID --value knowledgetree@blue")
    with host.sudo():
        status = host.file(f"/proc/{pid}/status").content_string
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["NoNewPrivs"].strip() == "1"
    assert int(fields["CapEff"].strip(), 16) == 0
    assert int(fields["CapBnd"].strip(), 16) == 0
    # The sandbox really is read-only outside the data folder.
    with host.sudo():
        denied = host.run(
            f"nsenter -t {pid} -m -- setpriv --reuid={USER} --regid={USER} --clear-groups "
            "touch /opt/knowledgetree/kt-sandbox-probe"
        )
    assert denied.rc != 0
    assert "Read-only file system" in denied.stderr


def test_venv_uses_debians_torch(host):
    out = host.check_output(
        "/opt/knowledgetree/current/venv/bin/python -c "
        "'import json, torch; print(json.dumps([torch.__file__, torch.__version__]))'"
    )
    path, version = json.loads(out)
    assert path.startswith("/usr/lib/python3/dist-packages/torch/")
    assert version.startswith("2.6.0")
    pip_list = host.check_output("/opt/knowledgetree/current/venv/bin/pip list --format=json")
    names = {item["name"].lower() for item in json.loads(pip_list)}
    assert not {n for n in names if n.startswith("nvidia-") or n == "triton"}


def test_knowledgetree_command_runs_as_the_app_user(host):
    with host.sudo():
        out = host.check_output("knowledgetree --help")
    assert "create-admin" in out
    # It reads the settings and reaches the database (an already-applied migration).
    with host.sudo():
        migrated = host.check_output("knowledgetree migrate")
    assert "Database is at revision" in migrated
    # Without root it refuses, saying why (the settings hold secrets).
    refused = host.run("sudo -u nobody /usr/local/bin/knowledgetree --help")
    assert refused.rc == 2
    assert "run it as root" in refused.stderr


def test_ready_through_nginx():
    response = kt_target.curl("/readyz")
    assert response.status == 200
    body = json.loads(response.body)
    assert body["status"] == "ready"
    assert all(check["ok"] for check in body["checks"].values())


def test_queries_are_embedded_by_onnx_runtime_inside_the_sandbox(host):
    """The app exports its query encoder with Debian's torch, inside its systemd sandbox,
    into its data folder, and switches to it (in the background after start-up)."""
    deadline = time.monotonic() + 300  # a first export: ~30 s of one core, more when busy
    while True:
        body = json.loads(kt_target.curl("/readyz").body)
        detail = body["checks"]["embedding_model"]["detail"]
        if "until" not in detail or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert detail.endswith("queries embedded by ONNX Runtime"), detail
    with host.sudo():
        exports = host.check_output(
            "find /var/lib/knowledgetree/cache/models/onnx -name query.onnx -user " + USER
        )
    assert exports.strip(), "the export is in the data folder, owned by the app user"


def test_no_secret_reaches_the_journal(host):
    """Migrations run through the knowledgetree command, which reads the settings file
    itself: no secret on a command line, so none in sudo's journal entries (issue 14)."""
    secrets = {name: value for name, value in kt_target.host_vars().items()
               if name.startswith("vault_") and value}  # fmt: skip
    assert {"vault_postgres_app_password", "vault_app_secret_key"} <= secrets.keys()
    with host.sudo():
        journal = host.check_output("journalctl --no-pager --output=cat")
    assert "COMMAND=" in journal  # sudo's entries are there to look at
    leaked = [name for name, value in secrets.items() if value in journal]
    assert not leaked, f"in the journal: {leaked}"

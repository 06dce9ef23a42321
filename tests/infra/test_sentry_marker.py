"""roles/sentry: the release and deploy marker through Sentry's HTTP API, against the
Sentry web API stand-in (tests/fakes/sentry_api.py) in its own process.

Runs on the control machine only (no test host): about 30 s.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, run_playbook

PLAYBOOK = Path(__file__).with_name("playbooks") / "sentry_marker.yml"
RELEASE = "knowledgetree@0.1.0-g1234abcd"
TOKEN = "sntrys_secret_standin_token"


@pytest.fixture
def sentry_url():
    with subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "tests.fakes.sentry_api",
         "--auth-token", TOKEN],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) as server:  # fmt: skip
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        yield url
        server.terminate()


def sentry_get(url: str, path: str):
    """Sentry's API as the stand-in answers it; None for a 404."""
    request = urllib.request.Request(
        f"{url}/api/0/organizations/acme/releases/{path}",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def marker(url: str, tmp_path: Path, **overrides: str):
    extra = {
        "sentry_url": url,
        "sentry_org": "acme",
        "sentry_project": "knowledgetree",
        "sentry_auth_token": TOKEN,
        "sentry_release": RELEASE,
        "sentry_environment": "production",
        **overrides,
    }
    # From a file, as from a vault: the token is on no command line.
    extra_file = tmp_path / "extra.json"
    extra_file.write_text(json.dumps(extra))
    return run_playbook(PLAYBOOK, "-e", f"@{extra_file}", "-v", inventory="localhost,")


def test_release_and_one_deploy_per_environment(sentry_url, tmp_path):
    first = marker(sentry_url, tmp_path)
    assert first.rc == 0, first.tail()
    assert first.recap["localhost"]["changed"] == 2
    assert TOKEN not in first.stdout
    release = sentry_get(sentry_url, f"{RELEASE}/")
    assert [project["slug"] for project in release["projects"]] == ["knowledgetree"]
    assert [d["environment"] for d in sentry_get(sentry_url, f"{RELEASE}/deploys/")] == [
        "production"
    ]

    again = marker(sentry_url, tmp_path)
    assert again.rc == 0, again.tail()
    assert again.recap["localhost"]["changed"] == 0
    assert len(sentry_get(sentry_url, f"{RELEASE}/deploys/")) == 1

    staging = marker(sentry_url, tmp_path, sentry_environment="staging")
    assert staging.rc == 0, staging.tail()
    deploys = sentry_get(sentry_url, f"{RELEASE}/deploys/")
    assert [d["environment"] for d in deploys] == ["production", "staging"]


def test_nothing_happens_unless_configured(sentry_url, tmp_path):
    run = marker(sentry_url, tmp_path, sentry_org="", sentry_project="", sentry_auth_token="")
    assert run.rc == 0, run.tail()
    assert sentry_get(sentry_url, f"{RELEASE}/") is None


def test_half_a_setting_fails_readably(sentry_url, tmp_path):
    run = marker(sentry_url, tmp_path, sentry_project="")
    assert run.rc != 0
    assert "set all of them or none" in run.stdout


def test_a_refused_token_fails_readably_without_showing_it(sentry_url, tmp_path):
    run = marker(sentry_url, tmp_path, sentry_auth_token="sntrys_wrong_token_value")
    assert run.rc != 0
    assert "HTTP 401" in run.stdout and "Invalid token" in run.stdout
    assert "sntrys_wrong_token_value" not in run.stdout
    assert sentry_get(sentry_url, f"{RELEASE}/") is None

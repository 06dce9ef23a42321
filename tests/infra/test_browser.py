"""The browser app through the provisioned host's nginx and TLS.

Playwright (tests/e2e/testhost.spec.ts, Debian's Chromium) signs up, uploads a PDF, asks,
opens the cited passage and loads the chat's deep link fresh from nginx (the SPA
fallback), under the Content-Security-Policy the host sends: any violation fails it. The
local Playwright suite (`make test-frontend`) covers the rest of the journey against a
local stack; this is the part that is only real behind nginx.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import REPO

E2E = REPO / "tests" / "e2e"


def test_the_browser_journey_through_nginx_and_tls(host, testhost_up):
    if not (E2E / "node_modules" / "@playwright" / "test").is_dir():
        pytest.fail("tests/e2e/node_modules is missing: `make test-infra` installs it")
    run = subprocess.run(
        ["npx", "playwright", "test", "-c", "playwright.testhost.config.ts"],
        cwd=E2E,
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ
        | {
            "E2E_TESTHOST_URL": f"https://{testhost_up.domain}",
            "E2E_TESTHOST_ADDRESS": testhost_up.address,
        },
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]

"""docs/CONFIGURATION.md is generated from the Settings class and must match it."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_is_up_to_date():
    result = subprocess.run(
        [sys.executable, "scripts/settings_doc.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr

"""Write docs/CONFIGURATION.md from the Settings class, so the reference never drifts.

.venv/bin/python scripts/settings_doc.py          # rewrite the file
.venv/bin/python scripts/settings_doc.py --check  # exit 1 if out of date (tested)
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import SecretStr
from pydantic_core import PydanticUndefined

from app.core.config import Settings

TARGET = Path(__file__).resolve().parent.parent / "docs" / "CONFIGURATION.md"

HEADER = """# Configuration reference

Generated from `app/core/config.py` by `scripts/settings_doc.py`; do not edit by hand.

The app reads each setting from the environment or from a `.env` file in its working
directory (the environment wins). Names are case-insensitive. On a provisioned server
the `app` role writes them to `/etc/knowledgetree/knowledgetree.env` (mode 0600) from
the inventory and the vault. A missing or invalid value stops the app and the
`knowledgetree` command at start with a message that names the variable.

| variable | default | description |
|---|---|---|
"""


def default_of(field) -> str:
    if field.is_required():
        return "**required**"
    value = field.default
    if value is PydanticUndefined and field.default_factory is not None:
        value = field.default_factory()
    if isinstance(value, SecretStr):
        return "(secret)"
    if value is None:
        return "unset"
    if isinstance(value, list | tuple):
        return ", ".join(f"`{item}`" for item in value) or "(empty)"
    return f"`{value}`"


def render() -> str:
    rows = []
    for name, field in Settings.model_fields.items():
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{name.upper()}` | {default_of(field)} | {description} |")
    return HEADER + "\n".join(rows) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is out of date: run scripts/settings_doc.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
